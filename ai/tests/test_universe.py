"""Universe scanner: the pure ranking, and the scan service with its snapshot and events."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from ai.universe import scanner
from ai.universe.scanner import ScanParams

DAY = 288


def bars(n=DAY, *, drift=0.0, vol=0.002, volume=1000.0, price=100.0, seed=0, hl=0.0005):
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(drift + rng.normal(0, vol, n)))
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(open_, close) * (1 + hl)
    low = np.minimum(open_, close) * (1 - hl)
    t = 1767225600000 + 300_000 * np.arange(n)
    return np.column_stack([t, open_, high, low, close, np.full(n, volume)])


P = ScanParams(min_quote_volume_usd=1e5, max_spread_pct=0.5)


def test_measures_match_their_definitions():
    b = bars(vol=0.001)
    m = scanner.measure("AAA/USDT", b, P)
    assert m.excluded == ""
    assert m.quote_volume_usd == pytest.approx((b[:, 4] * b[:, 5]).sum(), rel=1e-9)  # one day of bars
    r = np.diff(np.log(b[:, 4]))
    assert m.realized_volatility == pytest.approx(r.std(ddof=1) * np.sqrt(365 * 288), rel=1e-9)
    assert 0 < m.atr_pct < 1


def test_trend_strength_sees_drift_and_its_sign():
    up = scanner.trend_strength(bars(drift=0.001, seed=1))
    down = scanner.trend_strength(bars(drift=-0.001, seed=1))
    flat = scanner.trend_strength(bars(drift=0.0, seed=1))
    assert up > 5 and down < -5 and abs(flat) < abs(up)


def test_filters_name_their_reason():
    short = scanner.measure("NEW/USDT", bars(n=50), P)
    assert short.excluded.startswith("history 50 bars < minimum 288")
    thin = scanner.measure("THIN/USDT", bars(volume=1.0), P)
    assert "quote volume" in thin.excluded
    wide = scanner.measure("WIDE/USDT", bars(hl=0.02, volume=1e6), P)
    assert wide.excluded.startswith("spread")


def test_ranking_prefers_liquid_volatile_trending_and_is_deterministic():
    metrics = [
        scanner.measure("BIG/USDT", bars(volume=50_000, vol=0.003, drift=0.0008, seed=2), P),
        scanner.measure("MID/USDT", bars(volume=5_000, vol=0.002, seed=3), P),
        scanner.measure("SMALL/USDT", bars(volume=1_500, vol=0.001, seed=4), P),
        scanner.measure("THIN/USDT", bars(volume=1.0, seed=5), P),
    ]
    result = scanner.rank(metrics, P)
    assert [m.symbol for m in result.ranked] == ["BIG/USDT", "MID/USDT", "SMALL/USDT"]
    assert [m.rank for m in result.ranked] == [1, 2, 3]
    assert [m.symbol for m in result.excluded] == ["THIN/USDT"]
    again = scanner.rank([scanner.measure(m.symbol, b, P) for m, b in zip(metrics, [
        bars(volume=50_000, vol=0.003, drift=0.0008, seed=2), bars(volume=5_000, vol=0.002, seed=3),
        bars(volume=1_500, vol=0.001, seed=4), bars(volume=1.0, seed=5)], strict=True)], P)
    assert [(m.symbol, m.score) for m in again.ranked] == [(m.symbol, m.score) for m in result.ranked]


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="lookback_bars"):
        ScanParams(lookback_bars=5)
    with pytest.raises(ValueError, match="weights"):
        ScanParams(weight_liquidity=-1)


@pytest.mark.django_db
def test_scan_stores_a_snapshot_and_publishes_the_top_n(settings):
    from ai.models import UniverseSnapshot
    from ai.universe.services import scan_universe, top_opportunities
    from qtweb.events.models import Event
    from trading.marketdata.ingest import ingest
    from trading.models import Symbol

    settings.UNIVERSE_MIN_QUOTE_VOLUME_USD = 1e5
    for i, vol in enumerate([50_000, 20_000, 5_000, 2_000, 1.0]):
        s = Symbol.objects.create(exchange="paper", symbol=f"S{i}X/USDT", base=f"S{i}X", quote="USDT",
                                  tick_size=Decimal("0.0001"), lot_size=Decimal("0.001"))
        ingest(s, "5m", bars(volume=vol, seed=i))
    Symbol.objects.create(exchange="paper", symbol="NOHIST/USDT", base="NOHIST", quote="USDT",
                          tick_size=Decimal("0.01"), lot_size=Decimal("1"))

    snap = scan_universe(top_n=3)
    assert [r["symbol"] for r in snap.ranked][:1] == ["S0X/USDT"]
    assert len(snap.ranked) == 4
    assert {e["symbol"]: e["excluded"].split(" ")[0] for e in snap.excluded} == {
        "S4X/USDT": "quote", "NOHIST/USDT": "history"}
    events = Event.objects.filter(type="universe.opportunity", trace_id=snap.trace_id).order_by("payload__rank")
    assert [e.payload["rank"] for e in events] == [1, 2, 3]
    assert events[0].payload["symbol"] == "S0X/USDT"
    assert UniverseSnapshot.objects.count() == 1

    top = top_opportunities(2)
    assert [t["symbol"] for t in top] == [r["symbol"] for r in snap.ranked[:2]]
    with pytest.raises(ValueError, match="top_n"):
        top_opportunities(0)
    with pytest.raises(ValueError, match="top_n"):
        scan_universe(top_n=0)


@pytest.mark.django_db
def test_rpc_command_answers_in_process(settings):
    from qtweb.rpc.tasks import execute

    reply = execute.run("ai-service", "get_top_opportunities", {"top_n": "five"})
    assert reply["error"] == "bad_params" and "top_n" in reply["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("timeframe", ["1h", "4h", "1d"])
def test_coarser_timeframes_scan_from_resampled_5m_bars(settings, timeframe):
    from ai.universe.services import default_params, scan_universe
    from trading.marketdata import timeframes
    from trading.marketdata.ingest import ingest
    from trading.models import Symbol

    settings.UNIVERSE_MIN_QUOTE_VOLUME_USD = 1.0
    params = default_params(timeframe)
    assert params.lookback_bars >= 30
    n_5m = (params.lookback_bars + 2) * timeframes.seconds(timeframe) // 300
    for i in range(3):
        s = Symbol.objects.create(exchange="paper", symbol=f"R{i}X/USDT", base=f"R{i}X", quote="USDT",
                                  tick_size=Decimal("0.0001"), lot_size=Decimal("0.001"))
        ingest(s, "5m", bars(n=n_5m, volume=1000 * (i + 1), seed=i))
    snap = scan_universe(top_n=2, timeframe=timeframe)
    assert snap.timeframe == timeframe
    assert len(snap.ranked) == 3, snap.excluded
