import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai.ensemble import PRIOR_WEIGHT, PerformanceTracker, vote

MODELS = ["xgboost", "lightgbm", "nhits", "patchtst"]


@pytest.mark.parametrize(("probs", "action"), [
    ({"xgboost": 0.8, "lightgbm": 0.7, "nhits": 0.65, "patchtst": 0.75}, "BUY"),
    ({"xgboost": 0.2, "lightgbm": 0.3, "nhits": 0.35, "patchtst": 0.25}, "SELL"),
    ({"xgboost": 0.55, "lightgbm": 0.45, "nhits": 0.5, "patchtst": 0.52}, "HOLD"),
])
def test_equal_weights_vote(probs, action):
    v = vote(probs, dict.fromkeys(MODELS, 1.0))
    assert v.action == action
    assert v.probability_up == pytest.approx(sum(probs.values()) / 4)
    assert v.models_voted == 4
    assert v.score == pytest.approx(2 * v.probability_up - 1)


def test_weights_follow_recent_out_of_sample_skill():
    t = PerformanceTracker()
    for i in range(200):
        up = i % 2 == 0
        t.record("xgboost", 0.9 if up else 0.1, up)  # sharp and right
        t.record("nhits", 0.5, up)  # a coin flip: no skill
        t.record("patchtst", 0.1 if up else 0.9, up)  # confidently wrong
    w = t.weights(["xgboost", "nhits", "patchtst", "lightgbm"])
    assert w["xgboost"] == pytest.approx(1 - 0.01 / 0.25)
    assert w["nhits"] == 0.0 and w["patchtst"] == 0.0
    assert w["lightgbm"] == PRIOR_WEIGHT  # no track record yet
    v = vote({"xgboost": 0.7, "nhits": 0.1, "patchtst": 0.1}, w)
    assert v.probability_up == pytest.approx(0.7) and v.action == "BUY"
    assert v.ensemble_agreement == pytest.approx(1.0)


def test_missing_models_drop_out_and_none_left_means_no_signal():
    v = vote({"lightgbm": 0.8}, dict.fromkeys(MODELS, 1.0))
    assert v.models_voted == 1 and v.action == "BUY"
    none = vote({}, dict.fromkeys(MODELS, 1.0))
    assert not none.has_signal and none.reason == "no model answered" and none.action == "NONE"


def test_agreement_is_the_weight_share_on_the_ensembles_side():
    v = vote({"xgboost": 0.9, "lightgbm": 0.8, "nhits": 0.4, "patchtst": 0.3},
             {"xgboost": 2.0, "lightgbm": 1.0, "nhits": 0.5, "patchtst": 0.5})
    assert v.probability_up > 0.5
    assert v.ensemble_agreement == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [1.2, -0.1, float("nan"), None])
def test_bad_probabilities_are_named(bad):
    with pytest.raises(ValueError, match="nhits"):
        vote({"xgboost": 0.6, "nhits": bad}, {})


def test_threshold_must_be_above_one_half():
    with pytest.raises(ValueError, match="min_confidence_threshold"):
        vote({"xgboost": 0.6}, {}, min_confidence_threshold=0.5)


@given(st.dictionaries(st.sampled_from(MODELS), st.floats(0, 1), min_size=1),
       st.dictionaries(st.sampled_from(MODELS), st.floats(0, 10)), st.floats(0.51, 1.0))
def test_vote_properties(probs, weights, threshold):
    v = vote(probs, weights, min_confidence_threshold=threshold)
    assert min(probs.values()) - 1e-12 <= v.probability_up <= max(probs.values()) + 1e-12
    assert 0.5 <= v.confidence <= 1.0 and -1.0 <= v.score <= 1.0 and 0.0 <= v.ensemble_agreement <= 1.0 + 1e-12
    assert math.isclose(sum(v.weights.values()), 1.0)
    if v.action == "BUY":
        assert v.probability_up >= threshold
    if v.action == "SELL":
        assert v.probability_up <= 1 - threshold


def test_tracker_round_trips_and_refuses_bad_probabilities():
    t = PerformanceTracker(window=3)
    for p in (0.1, 0.2, 0.3, 0.4):
        t.record("xgboost", p, True)
    back = PerformanceTracker.from_dict(t.as_dict())
    assert list(back.outcomes["xgboost"]) == [(0.2, 1), (0.3, 1), (0.4, 1)]
    with pytest.raises(ValueError, match="outside"):
        t.record("xgboost", 1.5, True)
