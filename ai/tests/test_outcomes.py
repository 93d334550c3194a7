"""Published predictions are scored against the stored market, once, when their horizon has passed."""
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from ai import outcomes
from ai.ensemble import MIN_OUTCOMES
from qtweb.events.bus import publish_many
from trading.marketdata import selectors, timeframes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_tracker():
    cache.delete_many([outcomes.TRACKER_KEY, outcomes.WATERMARK_KEY])
    yield
    cache.delete_many([outcomes.TRACKER_KEY, outcomes.WATERMARK_KEY])


def test_predictions_are_scored_against_realized_moves_once_and_only_when_due():
    from trading.models import Symbol
    from trading.simulator.service import seed_history

    seed_history(days=1, seed=9)
    sym = Symbol.objects.get(exchange="paper", symbol="ETH/USDT:USDT")
    bars = selectors.last_bars([sym.pk], "5m", 100)[sym.pk]
    h = 12
    events, truth = [], []
    for i in range(40):  # 40 due predictions: a perfect model and a contrarian one
        t0, c0, c1 = int(bars[i, 0]), bars[i, 4], bars[i + h, 4]
        up = c1 > c0
        truth.append(up)
        for model, p in (("xgboost", 0.9 if up else 0.1), ("nhits", 0.1 if up else 0.9)):
            events.append(("model.prediction", {
                "symbol": sym.symbol, "timeframe": "5m", "model": model, "model_version": "1", "prob_up": p,
                "prob_down": 1 - p, "latency_ms": 1.0, "bar_open_time": timeframes.to_datetime(t0)}))
    not_due_bar = timeframes.to_datetime(int(bars[-1, 0]))
    events.append(("model.prediction", {
        "symbol": sym.symbol, "timeframe": "5m", "model": "xgboost", "model_version": "1", "prob_up": 0.5,
        "prob_down": 0.5, "latency_ms": 1.0, "bar_open_time": not_due_bar}))
    publish_many(events)

    now = datetime.now(UTC) + timedelta(seconds=1)
    assert outcomes.score_predictions(now=now) == 80
    tracker = outcomes.load_tracker()
    assert [y for _, y in tracker.outcomes["xgboost"]] == [int(u) for u in truth]
    assert tracker.brier("xgboost") == pytest.approx(0.01) and tracker.weight("nhits") == 0.0
    assert len(tracker.outcomes["xgboost"]) >= MIN_OUTCOMES
    assert outcomes.score_predictions(now=now) == 0  # scored once
    later = not_due_bar + timedelta(minutes=5 * (h + 2))
    assert outcomes.score_predictions(now=later) == 0  # due now, but its future bars are not stored: no outcome


def test_live_weights_switch_from_validation_to_realized_skill():
    from types import SimpleNamespace

    from ai.inference import InferenceEngine

    tracker = outcomes.load_tracker()
    for i in range(MIN_OUTCOMES):
        tracker.record("xgboost", 0.9 if i % 2 else 0.1, bool(i % 2))  # right every time
    cache.set(outcomes.TRACKER_KEY, tracker.as_dict())
    eng = InferenceEngine()
    eng.serving = [SimpleNamespace(version=SimpleNamespace(model_type=t, metrics={"brier": 0.2}))
                   for t in ("xgboost", "lightgbm")]
    w = eng.weights()
    assert w["xgboost"] == pytest.approx(1 - 0.01 / 0.25)  # realized outcomes
    assert w["lightgbm"] == pytest.approx(1 - 0.2 / 0.25)  # validation Brier until it has outcomes
