"""Timeframes, resampling, ingestion and the last-N-bars selector (real PostgreSQL)."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.exchanges.errors import BadSymbol, BadTimeframe
from trading.marketdata import selectors, timeframes
from trading.marketdata.ingest import ingest
from trading.models import Candle, MarketType, Symbol

T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
M5 = 300_000


def walk(n: int, start_ms: int = T0, step_ms: int = M5, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n))
    vol = rng.uniform(1, 10, n)
    t = start_ms + step_ms * np.arange(n)
    return np.column_stack([t, open_, high, low, close, vol])


def test_unknown_timeframe_is_named():
    with pytest.raises(BadTimeframe, match="'7m'"):
        timeframes.seconds("7m")


def test_resample_5m_to_1h_aggregates_ohlcv():
    rows = walk(24)  # two full hours
    out = timeframes.resample(rows, "5m", "1h")
    assert out.shape == (2, 6)
    first = rows[:12]
    assert out[0, 0] == T0
    assert out[0, 1] == first[0, 1] and out[0, 4] == first[-1, 4]
    assert out[0, 2] == first[:, 2].max() and out[0, 3] == first[:, 3].min()
    assert out[0, 5] == pytest.approx(first[:, 5].sum())


def test_resample_drops_incomplete_buckets_and_refuses_impossible_targets():
    rows = np.delete(walk(24), 5, axis=0)  # a gap in the first hour
    out = timeframes.resample(rows, "5m", "1h")
    assert list(out[:, 0]) == [T0 + 3_600_000]
    assert len(timeframes.resample(rows, "5m", "1h", complete_only=False)) == 2
    with pytest.raises(BadTimeframe):
        timeframes.resample(rows, "1h", "5m")


@given(st.integers(min_value=1, max_value=300), st.sampled_from(["15m", "1h", "4h"]))
def test_resampled_bars_keep_ohlc_consistent(n, target):
    out = timeframes.resample(walk(n), "5m", target, complete_only=False)
    assert (out[:, 2] >= np.maximum(out[:, 1], out[:, 4])).all()
    assert (np.minimum(out[:, 1], out[:, 4]) >= out[:, 3]).all()
    assert out[:, 5].sum() == pytest.approx(walk(n)[:, 5].sum())


@pytest.fixture
def btc(db):
    return Symbol.objects.create(exchange="paper", symbol="BTC/USDT:USDT", base="BTC", quote="USDT", settle="USDT",
                                 market_type=MarketType.PERPETUAL, sector="layer1", tick_size=Decimal("0.1"),
                                 lot_size=Decimal("0.001"), min_notional=Decimal("5"))


def test_ingest_upserts_exactly_and_reads_back_in_order(btc):
    rows = walk(50)
    assert ingest(btc, "5m", rows).rows == 50
    changed = rows[-5:].copy()
    changed[:, 4] = changed[:, 3]  # the last bars were revised: close at the low
    ingest(btc, "5m", changed)
    assert Candle.objects.filter(symbol=btc, timeframe="5m").count() == 50
    got = selectors.last_bars([btc.pk], "5m", 10)[btc.pk]
    assert got.shape == (10, 6)
    assert list(got[:, 0]) == list(rows[-10:, 0])
    np.testing.assert_allclose(got[-5:, 4], changed[:, 4])
    c = Candle.objects.get(symbol=btc, timeframe="5m", open_time=datetime.fromtimestamp(rows[0, 0] / 1000, UTC))
    assert c.close == Decimal(repr(float(rows[0, 4]))).quantize(Decimal("1e-12"))  # no binary noise added


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.__setitem__((3, 0), r[3, 0] + 1), "not aligned"),
    (lambda r: r.__setitem__((4, 2), r[4, 3] * 0.5), "inconsistent OHLCV at row 4"),
    (lambda r: r.__setitem__((2, 4), np.nan), "NaN"),
    (lambda r: r.__setitem__((1, 5), -1), "inconsistent OHLCV at row 1"),
    (lambda r: r.__setitem__((6, 0), r[2, 0]), "row 2 appears more than once"),
])
def test_bad_rows_are_refused_with_the_row_and_nothing_is_written(btc, mutate, message):
    rows = walk(10)
    mutate(rows)
    with pytest.raises(ValueError, match=message):
        ingest(btc, "5m", rows)
    assert not Candle.objects.exists()


def test_last_bars_for_many_symbols_and_resampled_reads(btc):
    eth = Symbol.objects.create(exchange="paper", symbol="ETH/USDT", base="ETH", quote="USDT",
                                tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))
    ingest(btc, "5m", walk(48, seed=1))
    ingest(eth, "5m", walk(30, seed=2))
    got = selectors.last_bars([btc.pk, eth.pk], "5m", 40)
    assert got[btc.pk].shape == (40, 6) and got[eth.pk].shape == (30, 6)
    assert (np.diff(got[btc.pk][:, 0]) == M5).all()
    hourly = selectors.bars(btc, "1h", 10)
    assert hourly.shape == (4, 6) and (np.diff(hourly[:, 0]) == 3_600_000).all()
    assert selectors.last_bars([btc.pk], "1h", 5)[btc.pk].shape == (0, 6)  # nothing stored at 1h


def test_unknown_symbols_are_named(btc):
    with pytest.raises(BadSymbol, match="DOGE/USDT"):
        selectors.resolve_symbols(["BTC/USDT:USDT", "DOGE/USDT"], "paper")
    assert [s.symbol for s in selectors.resolve_symbols(["BTC/USDT:USDT"], "paper")] == ["BTC/USDT:USDT"]


def test_symbol_clean_checks_the_unified_format(db):
    from django.core.exceptions import ValidationError

    bad = Symbol(exchange="paper", symbol="BTCUSDT", base="BTC", quote="USDT", tick_size=1, lot_size=1)
    with pytest.raises(ValidationError, match="unified symbol"):
        bad.clean()
    perp_without_settle = Symbol(exchange="paper", symbol="BTC/USDT", base="BTC", quote="USDT",
                                 market_type=MarketType.PERPETUAL, tick_size=1, lot_size=1)
    with pytest.raises(ValidationError, match="settle"):
        perp_without_settle.clean()
