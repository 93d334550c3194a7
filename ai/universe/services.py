"""Universe scan as a service: read bars, rank, store the snapshot, publish the top N."""
from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from ai.models import UniverseSnapshot
from ai.universe import scanner
from qtweb import tracing
from qtweb.events import EventType
from qtweb.events.bus import publish_many
from qtweb.health.status import report_module
from qtweb.queues import Service
from trading.marketdata import selectors, timeframes
from trading.models import Symbol

# Coarse timeframes have few bars a day; the window never gets shorter than this many bars.
MIN_LOOKBACK_BARS = 30


def default_params(timeframe: str | None = None) -> scanner.ScanParams:
    bar_minutes = timeframes.seconds(timeframe or settings.UNIVERSE_TIMEFRAME) // 60
    window = max(24 * 60 // bar_minutes, MIN_LOOKBACK_BARS)  # a day of bars, or 30 bars
    return scanner.ScanParams(
        bar_minutes=bar_minutes, lookback_bars=window, min_history_bars=window,
        min_quote_volume_usd=settings.UNIVERSE_MIN_QUOTE_VOLUME_USD, max_spread_pct=settings.UNIVERSE_MAX_SPREAD_PCT,
    )


def _bars(symbols: list[Symbol], timeframe: str, n: int) -> dict[int, object]:
    """Stored bars in one query; symbols stored only at a finer timeframe are resampled."""
    stored = selectors.last_bars([s.pk for s in symbols], timeframe, n)
    for s in symbols:
        if len(stored[s.pk]) < n:
            resampled = selectors.bars(s, timeframe, n)
            if len(resampled) > len(stored[s.pk]):
                stored[s.pk] = resampled
    return stored


def _report_scanner(status: str, reason: str, **details) -> None:
    """The scanner is the ai-service's `universe_scanner` module in the health graph."""
    report_module(Service.AI.value, "universe_scanner", status, reason, **details)


def scan_universe(*, top_n: int | None = None, exchange: str | None = None, timeframe: str | None = None,
                  params: scanner.ScanParams | None = None) -> UniverseSnapshot:
    """Rank every active symbol of the exchange; store the snapshot and publish
    `universe.opportunity` for the top N, in one transaction."""
    try:
        snap = _scan(top_n=top_n, exchange=exchange, timeframe=timeframe, params=params)
    except Exception as exc:
        _report_scanner("DEGRADED", f"scan failed: {type(exc).__name__}: {exc}")
        raise
    ranked, excluded = len(snap.ranked), len(snap.excluded)
    if ranked:
        _report_scanner("HEALTHY", f"{ranked} symbols ranked, {excluded} excluded ({snap.exchange} {snap.timeframe})",
                        ranked=ranked, excluded=excluded, snapshot_id=snap.pk)
    else:  # nothing to offer inference: as good as no scan
        _report_scanner("DEGRADED", f"no symbol ranked: {excluded} excluded by the filters, "
                        f"{snap.exchange} {snap.timeframe}", ranked=0, excluded=excluded, snapshot_id=snap.pk)
    return snap


def _scan(*, top_n: int | None, exchange: str | None, timeframe: str | None,
          params: scanner.ScanParams | None) -> UniverseSnapshot:
    top_n = settings.UNIVERSE_TOP_N if top_n is None else top_n
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1 (got {top_n})")
    exchange = exchange or settings.MARKET_EXCHANGE
    timeframe = timeframe or settings.UNIVERSE_TIMEFRAME
    params = params or default_params(timeframe)
    if params.bar_minutes * 60 != timeframes.seconds(timeframe):
        raise ValueError(f"params are for {params.bar_minutes}m bars, the scan is on {timeframe}")
    symbols = list(Symbol.objects.filter(exchange=exchange, active=True))
    bars = _bars(symbols, timeframe, max(params.lookback_bars, params.min_history_bars))
    metrics = [scanner.measure(s.symbol, bars[s.pk], params) for s in symbols]
    result = scanner.rank(metrics, params)
    with tracing.trace() as trace_id, transaction.atomic():
        snap = UniverseSnapshot.objects.create(
            created_at=datetime.now(UTC), exchange=exchange, timeframe=timeframe, params=asdict(params),
            ranked=[m.as_dict() for m in result.ranked], excluded=[m.as_dict() for m in result.excluded],
            trace_id=trace_id,
        )
        publish_many([
            (EventType.UNIVERSE_OPPORTUNITY, {
                "symbol": m.symbol, "rank": m.rank, "score": m.score,
                "quote_volume_usd": f"{m.quote_volume_usd:.2f}", "atr_pct": m.atr_pct,
                "realized_volatility": m.realized_volatility, "trend_strength": m.trend_strength,
            })
            for m in result.top(top_n)
        ], source="ai-service")
    return snap


def top_opportunities(top_n: int = 20) -> list[dict]:
    """The latest snapshot's best `top_n` (scanning now if none exists yet)."""
    if not isinstance(top_n, int) or isinstance(top_n, bool) or not 1 <= top_n <= 500:
        raise ValueError(f"top_n must be an integer from 1 to 500 (got {top_n!r})")
    snap = UniverseSnapshot.objects.filter(exchange=settings.MARKET_EXCHANGE).first() or scan_universe()
    return [{**r, "snapshot_at": snap.created_at.isoformat()} for r in snap.ranked[:top_n]]



