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
from trading.marketdata import selectors, timeframes
from trading.models import Symbol


def default_params() -> scanner.ScanParams:
    bar_minutes = timeframes.seconds(settings.UNIVERSE_TIMEFRAME) // 60
    day = 24 * 60 // bar_minutes
    return scanner.ScanParams(
        bar_minutes=bar_minutes, lookback_bars=day, min_history_bars=day,
        min_quote_volume_usd=settings.UNIVERSE_MIN_QUOTE_VOLUME_USD, max_spread_pct=settings.UNIVERSE_MAX_SPREAD_PCT,
    )


def scan_universe(*, top_n: int | None = None, exchange: str | None = None,
                  params: scanner.ScanParams | None = None) -> UniverseSnapshot:
    """Rank every active symbol of the exchange; store the snapshot and publish
    `universe.opportunity` for the top N, in one transaction."""
    top_n = settings.UNIVERSE_TOP_N if top_n is None else top_n
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1 (got {top_n})")
    exchange = exchange or settings.MARKET_EXCHANGE
    params = params or default_params()
    timeframe = f"{params.bar_minutes}m" if params.bar_minutes < 60 else f"{params.bar_minutes // 60}h"
    symbols = list(Symbol.objects.filter(exchange=exchange, active=True))
    bars = selectors.last_bars([s.pk for s in symbols], timeframe, max(params.lookback_bars, params.min_history_bars))
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



