"""The ensemble's live weights: each model's recent realized outcomes, as a PerformanceTracker.

The learning manager's outcome store (analytics/learning/outcomes.py) resolves every published
`model.prediction` against the bars that followed and hands each resolved (P(up), went up) to
`record_outcomes`. `InferenceEngine.weights()` uses a model's Brier skill over its last
PERFORMANCE_WINDOW outcomes once it has MIN_OUTCOMES. The tracker lives in the cache: if Redis
loses it, the weights fall back to validation Brier until new outcomes accumulate (the store
itself is in the database).
"""
from __future__ import annotations

from collections.abc import Iterable

from django.core.cache import cache

from ai.ensemble import PerformanceTracker

TRACKER_KEY = "ai:performance:tracker"
KEEP_SECONDS = 90 * 24 * 3600


def load_tracker() -> PerformanceTracker:
    data = cache.get(TRACKER_KEY)
    return PerformanceTracker.from_dict(data) if data else PerformanceTracker()


def forget_model(model_type: str) -> None:
    """A new champion of this type starts without its predecessor's record (the weights then come
    from its validation Brier until it has MIN_OUTCOMES of its own)."""
    tracker = load_tracker()
    if tracker.outcomes.pop(model_type, None) is not None:
        cache.set(TRACKER_KEY, tracker.as_dict(), timeout=KEEP_SECONDS)


def record_outcomes(rows: Iterable[tuple[str, float, bool]]) -> int:
    """Add (model type, P(up), went up) outcomes, oldest first, to the live tracker."""
    tracker = load_tracker()
    n = 0
    for model, p, went_up in rows:
        tracker.record(model, float(p), bool(went_up))
        n += 1
    if n:
        cache.set(TRACKER_KEY, tracker.as_dict(), timeout=KEEP_SECONDS)
    return n
