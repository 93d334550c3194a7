"""manage.py import_candles: CSV and Parquet, bad rows named by number and skipped."""
from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from trading.models import Candle, Symbol

pytestmark = pytest.mark.django_db

GOOD = [
    ("2026-01-01T00:00:00Z", "100", "101", "99", "100.5", "10"),
    ("2026-01-01T00:05:00Z", "100.5", "102", "100", "101", "12"),
    ("2026-01-01T00:20:00Z", "101", "101.5", "100.5", "101.2", "8"),  # 00:10 and 00:15 missing: a gap
]


@pytest.fixture
def eth(db):
    return Symbol.objects.create(exchange="paper", symbol="ETH/USDT", base="ETH", quote="USDT",
                                 tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("import_candles", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write_csv(path, rows, header="symbol,timeframe,open_time,open,high,low,close,volume"):
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_csv_with_bad_rows_imports_the_rest_and_names_each_problem(eth, tmp_path):
    rows = [("ETH/USDT", "5m", *r) for r in GOOD] + [
        ("ETH/USDT", "5m", "2026-01-01T00:05:00Z", "1", "2", "0.5", "1", "1"),  # line 5: duplicate time
        ("ETH/USDT", "5m", "2026-01-01T00:25:00Z", "100", "99", "98", "100", "1"),  # line 6: high < close
        ("ETH/USDT", "5m", "2026-01-01 00:30:00", "100", "101", "99", "100", "1"),  # line 7: no timezone
        ("ETH/USDT", "5m", "2026-01-01T00:33:00Z", "100", "101", "99", "100", "1"),  # line 8: off grid
        ("ETH/USDT", "5m", "2026-01-01T00:35:00Z", "abc", "101", "99", "100", "1"),  # line 9: not a number
        ("ETH/USDT", "7m", "2026-01-01T00:35:00Z", "100", "101", "99", "100", "1"),  # line 10: bad timeframe
    ]
    out, err = run(str(write_csv(tmp_path / "eth.csv", rows)))
    assert "eth.csv: 3 rows imported, 6 skipped, 1 gap(s)" in out
    assert "row 5: duplicate of row 3" in err
    assert "row 6: inconsistent OHLC" in err
    assert "row 7: open_time '2026-01-01 00:30:00' has no timezone" in err
    assert "row 8: open_time 2026-01-01T00:33:00+00:00 is not on the 5m grid" in err
    assert "row 9: open 'abc' is not a number" in err
    assert "row 10: unknown timeframe '7m'" in err
    assert "gap in ETH/USDT 5m: 2 bar(s) missing from 2026-01-01 00:10Z to 2026-01-01 00:15Z" in err
    assert Candle.objects.filter(symbol=eth, timeframe="5m").count() == 3


def test_parquet_with_epoch_milliseconds_and_command_line_symbol(eth, tmp_path):
    df = pd.DataFrame(
        [(1767225600000 + i * 300_000, 10 + i, 11 + i, 9 + i, 10.5 + i, 100) for i in range(12)],
        columns=["open_time", "open", "high", "low", "close", "volume"],
    )
    path = tmp_path / "eth.parquet"
    df.to_parquet(path)
    out, err = run(str(path), "--symbol", "ETH/USDT", "--timeframe", "5m")
    assert "12 rows imported, 0 skipped, 0 gap(s)" in out and err == ""
    assert Candle.objects.filter(symbol=eth).count() == 12


def test_unknown_symbol_rows_are_named_and_skipped(eth, tmp_path):
    rows = [("ETH/USDT", "5m", *GOOD[0]), ("DOGE/USDT", "5m", *GOOD[0])]
    out, err = run(str(write_csv(tmp_path / "mixed.csv", rows)))
    assert "unknown symbol(s) on paper: DOGE/USDT: 1 rows skipped" in err
    assert "1 rows imported, 1 skipped" in out


@pytest.mark.parametrize(("content", "args", "message"), [
    ("open_time,open,high\n", [], "missing column(s) low, close, volume"),
    ("open_time,open,high,low,close,volume\n", [], "no symbol column and no --symbol given"),
    ("open_time,open,high,low,close,volume\n", ["--symbol", "ETH/USDT", "--timeframe", "2h"], "unknown timeframe '2h'"),
])
def test_unusable_files_and_arguments_stop_with_a_clear_error(eth, tmp_path, content, args, message):
    path = tmp_path / "x.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(str(path), *args)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run(str(tmp_path / "nope.csv"))
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(CommandError, match="unsupported file type '.json'"):
        run(str(bad))
