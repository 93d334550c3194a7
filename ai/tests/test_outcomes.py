"""The ensemble's live weights come from realized outcomes once a model has enough of them."""
import pytest
from django.core.cache import cache

from ai import outcomes
from ai.ensemble import MIN_OUTCOMES


@pytest.fixture(autouse=True)
def clean_tracker():
    cache.delete(outcomes.TRACKER_KEY)
    yield
    cache.delete(outcomes.TRACKER_KEY)


def test_live_weights_switch_from_validation_to_realized_skill():
    from types import SimpleNamespace

    from ai.inference import InferenceEngine

    assert outcomes.record_outcomes(("xgboost", 0.9 if i % 2 else 0.1, bool(i % 2)) for i in range(MIN_OUTCOMES)) \
        == MIN_OUTCOMES  # right every time
    eng = InferenceEngine()
    eng.serving = [SimpleNamespace(version=SimpleNamespace(model_type=t, metrics={"brier": 0.2}))
                   for t in ("xgboost", "lightgbm")]
    w = eng.weights()
    assert w["xgboost"] == pytest.approx(1 - 0.01 / 0.25)  # realized outcomes
    assert w["lightgbm"] == pytest.approx(1 - 0.2 / 0.25)  # validation Brier until it has outcomes
