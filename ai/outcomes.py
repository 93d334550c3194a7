"""Scoring published predictions against what the market did: the ensemble's live weights.

Every `model.prediction` carries the bar it was made at. Once that bar plus the label horizon
has closed, `score_predictions()` (task `ai.outcomes.score`, inference queue, every 5 minutes)
records (P(up), went up) per model in a PerformanceTracker; `InferenceEngine.weights()` uses a
model's Brier skill over its last PERFORMANCE_WINDOW outcomes once it has MIN_OUTCOMES.
The tracker and a watermark (the last scored event time) live in the cache: if Redis loses them,
the weights fall back to validation Brier until new outcomes accumulate.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from django.core.cache import cache

from ai.ensemble import PerformanceTracker
from ai.features.labels import DEFAULT_HORIZON_BARS
from qtweb.logging import get_logger
from trading.marketdata import selectors, timeframes

log = get_logger(__name__)

TRACKER_KEY = "ai:performance:tracker"
WATERMARK_KEY = "ai:performance:watermark"
KEEP_SECONDS = 90 * 24 * 3600
# Predictions scored per run: bounded so one run stays short after a long pause.
MAX_EVENTS_PER_RUN = 20_000


def load_tracker() -> PerformanceTracker:
    data = cache.get(TRACKER_KEY)
    return PerformanceTracker.from_dict(data) if data else PerformanceTracker()


def score_predictions(*, exchange: str = "paper", horizon_bars: int = DEFAULT_HORIZON_BARS,
                      now: datetime | None = None) -> int:
    """Record the outcome of every prediction whose horizon has passed. Returns how many."""
    from qtweb.events.models import Event

    now = now or datetime.now(UTC)
    watermark = cache.get(WATERMARK_KEY)
    qs = Event.objects.filter(type="model.prediction").order_by("timestamp")
    if watermark:
        qs = qs.filter(timestamp__gt=datetime.fromisoformat(watermark))
    tracker = load_tracker()
    scored, last_ts = 0, None
    rows = list(qs.values_list("timestamp", "payload")[:MAX_EVENTS_PER_RUN])
    by_symbol: dict[tuple[str, str], list] = {}
    for ts, payload in rows:
        if not payload.get("bar_open_time"):
            last_ts = ts
            continue
        tf = payload["timeframe"]
        bar = datetime.fromisoformat(payload["bar_open_time"])
        if bar + timedelta(seconds=timeframes.seconds(tf) * (horizon_bars + 1)) > now:
            break  # this one and every later one are not due yet (ordered by time)
        by_symbol.setdefault((payload["symbol"], tf), []).append((ts, payload, bar))
        last_ts = ts
    for (symbol, tf), items in by_symbol.items():
        try:
            (sym,) = selectors.resolve_symbols([symbol], exchange)
        except Exception:
            continue
        step = timeframes.milliseconds(tf)
        first = min(timeframes.to_ms(b) for _, _, b in items)
        n = int((timeframes.to_ms(now) - first) // step) + horizon_bars + 2
        bars = selectors.last_bars([sym.pk], tf, n)[sym.pk]
        close_at = dict(zip(bars[:, 0].astype(np.int64).tolist(), bars[:, 4].tolist(), strict=True))
        for _, payload, bar in items:
            t0 = timeframes.to_ms(bar)
            c0, c1 = close_at.get(t0), close_at.get(t0 + horizon_bars * step)
            if c0 is None or c1 is None:
                continue  # a gap in the stored bars: no honest outcome
            tracker.record(payload["model"], float(payload["prob_up"]), c1 > c0)
            scored += 1
    if last_ts is not None:
        cache.set(TRACKER_KEY, tracker.as_dict(), timeout=KEEP_SECONDS)
        cache.set(WATERMARK_KEY, last_ts.isoformat(), timeout=KEEP_SECONDS)
    if scored:
        log.info("predictions scored", scored=scored)
    return scored
