"""manage.py import_candles --create-symbols, and calendar gaps in the import report."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from core.enums import MarketType
from trading.models import Candle, Symbol

pytestmark = pytest.mark.django_db

HEADER = "open_time,open,high,low,close,volume"


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("import_candles", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def hourly_csv(path, times, *, first_open="93500.1", step="0.1", seed=7):
    """OHLCV rows at `times`: prices on the `step` grid (a random walk), volumes on a 0.001 grid."""
    rng = np.random.default_rng(seed)
    lines, price, step = [HEADER], Decimal(first_open), Decimal(step)
    floor = Decimal(first_open) / 2
    for t in times:
        o = price
        c = max(floor, o + step * int(rng.integers(-50, 51)))
        h = max(o, c) + step * int(rng.integers(0, 20))
        lo = min(o, c) - step * int(rng.integers(0, 20))
        v = Decimal(int(rng.integers(1, 50_000))) / 1000
        lines.append(f"{t:%Y-%m-%dT%H:%M:%SZ},{o},{h},{lo},{c},{v}")
        price = c
    path.write_text("\n".join(lines) + "\n")
    return path


def the_issue_file(tmp_path):
    """The issue's case: 5,000 hourly bars of a symbol the database does not know."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return hourly_csv(tmp_path / "new.csv", [start + timedelta(hours=i) for i in range(5000)])


def test_unknown_symbol_is_refused_with_the_hint(tmp_path):
    out, err = run(str(the_issue_file(tmp_path)), "--symbol", "NEW/USDT:USDT", "--timeframe", "1h")
    assert "unknown symbol(s) on paper: NEW/USDT:USDT: 5000 rows skipped (add --create-symbols to create it)" in err
    assert "0 rows imported, 5000 skipped" in out
    assert not Symbol.objects.filter(symbol="NEW/USDT:USDT").exists()


def test_create_symbols_imports_the_whole_file_with_inferred_increments(tmp_path):
    out, err = run(str(the_issue_file(tmp_path)), "--symbol", "NEW/USDT:USDT", "--timeframe", "1h",
                   "--create-symbols")
    assert err == ""
    assert ("new.csv: created NEW/USDT:USDT on paper: tick 0.1 (inferred from 20000 prices), "
            "lot 0.001 (inferred from 5000 volumes), min notional 0") in out
    assert "new.csv: 5000 rows imported, 0 skipped, 0 gap(s), 0 calendar gap(s)" in out
    sym = Symbol.objects.get(exchange="paper", symbol="NEW/USDT:USDT")
    assert (sym.base, sym.quote, sym.settle, sym.market_type) == ("NEW", "USDT", "USDT", MarketType.PERPETUAL)
    assert (sym.tick_size, sym.lot_size, sym.min_notional) == (Decimal("0.1"), Decimal("0.001"), Decimal("0"))
    assert Candle.objects.filter(symbol=sym, timeframe="1h").count() == 5000
    # a second run finds the symbol: nothing created, the bars upserted
    out, _ = run(str(tmp_path / "new.csv"), "--symbol", "NEW/USDT:USDT", "--timeframe", "1h", "--create-symbols")
    assert "created" not in out and "5000 rows imported" in out
    assert Candle.objects.filter(symbol=sym).count() == 5000


def test_given_increments_and_sector_on_another_exchange(tmp_path):
    start = datetime(2026, 1, 5, tzinfo=UTC)
    path = hourly_csv(tmp_path / "spot.csv", [start + timedelta(hours=i) for i in range(10)])
    out, _ = run(str(path), "--symbol", "NEW/USDT", "--timeframe", "1h", "--create-symbols", "--exchange", "lab",
                 "--tick-size", "0.05", "--lot-size", "0.01", "--sector", "layer1")
    assert "created NEW/USDT on lab: tick 0.05 (given), lot 0.01 (given)" in out
    sym = Symbol.objects.get(exchange="lab", symbol="NEW/USDT")
    assert (sym.market_type, sym.settle, sym.sector) == (MarketType.SPOT, "", "layer1")
    assert (sym.tick_size, sym.lot_size) == (Decimal("0.05"), Decimal("0.01"))


@pytest.mark.parametrize(("args", "message"), [
    (["--tick-size", "0"], "--tick-size must be greater than 0, got 0"),
    (["--tick-size", "-0.1"], "--tick-size must be greater than 0"),
    (["--tick-size", "abc"], "--tick-size 'abc' is not a number"),
    (["--tick-size", "nan"], "--tick-size 'nan' is not a number"),
    (["--lot-size", "0"], "--lot-size must be greater than 0"),
    (["--lot-size", "1e-13"], "--lot-size 1e-13 has more than 12 decimal places"),
    (["--sector", "x" * 33], "--sector 'x+' is longer than 32 characters"),
])
def test_bad_option_values_are_refused_naming_the_option(tmp_path, args, message):
    path = hourly_csv(tmp_path / "a.csv", [datetime(2026, 1, 5, tzinfo=UTC)])
    with pytest.raises(CommandError, match=message):
        run(str(path), "--symbol", "NEW/USDT", "--timeframe", "1h", "--create-symbols", *args)
    assert not Symbol.objects.exists()


def test_increment_options_without_create_symbols_are_refused(tmp_path):
    path = hourly_csv(tmp_path / "a.csv", [datetime(2026, 1, 5, tzinfo=UTC)])
    with pytest.raises(CommandError, match="--tick-size only apply to symbols created with --create-symbols"):
        run(str(path), "--symbol", "NEW/USDT", "--timeframe", "1h", "--tick-size", "0.1")


def test_a_file_that_fails_creates_no_symbol(tmp_path):
    # a good new symbol first, then one that cannot be created: the whole file is refused
    path = tmp_path / "two.csv"
    path.write_text("symbol,timeframe," + HEADER + "\n"
                    "NEW/USDT,1h,2026-01-05T00:00:00Z,10,11,9,10.5,1\n"
                    "new-usdt,1h,2026-01-05T00:00:00Z,10,11,9,10.5,1\n")
    with pytest.raises(CommandError, match="two.csv: cannot create 'new-usdt' is not a unified symbol like BTC/USDT"):
        run(str(path), "--create-symbols")
    assert not Symbol.objects.exists()
    assert not Candle.objects.exists()


def fx_hours(first: datetime, last: datetime):
    """Hourly bar times of an FX market: open Sunday 22:00 to Friday 22:00 UTC."""
    t = first
    while t <= last:
        wd, h = t.weekday(), t.hour
        closed = (wd == 4 and h >= 22) or wd == 5 or (wd == 6 and h < 22)
        if not closed:
            yield t
        t += timedelta(hours=1)


def test_weekend_gaps_in_fx_data_are_reported_as_calendar_gaps(tmp_path):
    # Sunday 2026-01-04 22:00 to Friday 2026-01-23 21:00: three trading weeks, two weekends
    times = list(fx_hours(datetime(2026, 1, 4, 22, tzinfo=UTC), datetime(2026, 1, 23, 21, tzinfo=UTC)))
    outage = {datetime(2026, 1, 14, h, tzinfo=UTC) for h in (10, 11, 12)}  # a Wednesday: data missing
    path = hourly_csv(tmp_path / "eurusd.csv", [t for t in times if t not in outage],
                      first_open="1.0834", step="0.0001")
    out, err = run(str(path), "--symbol", "EUR/USD", "--timeframe", "1h", "--create-symbols")
    assert ("eurusd.csv: calendar gap (weekend) in EUR/USD 1h: 48 bar(s) missing from "
            "2026-01-09 22:00Z to 2026-01-11 21:00Z") in out
    assert ("eurusd.csv: calendar gap (weekend) in EUR/USD 1h: 48 bar(s) missing from "
            "2026-01-16 22:00Z to 2026-01-18 21:00Z") in out
    assert "gap in EUR/USD 1h: 3 bar(s) missing from 2026-01-14 10:00Z to 2026-01-14 12:00Z" in err
    assert "calendar gap" not in err
    assert f"{len(times) - 3} rows imported, 0 skipped, 1 gap(s), 2 calendar gap(s)" in out
    assert "created EUR/USD on paper: tick 0.0001 (inferred" in out
