"""The drift statistics (pure): PSI, the reference histograms, performance decay, one score."""
import numpy as np
import pytest

from ai.evaluation import drift


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_moved_one():
    ref = drift.histogram(_rng(0).normal(size=20_000))
    same = drift.psi(ref, _rng(1).normal(size=5_000))
    wider = drift.psi(ref, _rng(2).normal(scale=2.0, size=5_000))
    shifted = drift.psi(ref, _rng(3).normal(loc=0.5, size=5_000))
    assert same < 0.01
    assert wider > 0.25 and shifted > 0.15
    assert drift.psi(ref, _rng(4).normal(size=drift.MIN_ROWS - 1)) is None  # too few to judge


def test_psi_matches_its_formula_on_a_hand_made_histogram():
    ref = {"edges": [0.0], "shares": [0.5, 0.5], "n": 2}
    values = np.array([-1.0] * 75 + [1.0] * 25 + [np.nan] * 10)  # NaN rows are ignored
    expected = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert drift.psi(ref, values) == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs 2 shares"):
        drift.psi({"edges": [0.0], "shares": [1.0]}, values)


def test_a_feature_with_few_values_gets_fewer_bins_not_an_error():
    h = drift.histogram(np.array([0.0, 1.0] * 500))
    assert len(h["shares"]) == len(h["edges"]) + 1 and sum(h["shares"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no finite values"):
        drift.histogram(np.array([np.nan, np.inf]))


def test_feature_reference_and_psi_by_name():
    x = _rng(5).normal(size=(4_000, 2))
    ref = drift.feature_reference(x, ["a", "b"])
    moved = np.column_stack([_rng(6).normal(size=1_000), _rng(7).normal(scale=3, size=1_000)])
    out = drift.feature_psi(ref, moved, ["a", "b"])
    assert out["a"] < 0.05 < 0.25 < out["b"]
    with pytest.raises(ValueError, match="rows, 3"):
        drift.feature_reference(x, ["a", "b", "c"])


def test_performance_decay_is_relative_brier_worsening_and_needs_enough_outcomes():
    y = np.array([1, 0] * 100, dtype=bool)
    p_good = np.where(y, 0.6, 0.4)  # Brier 0.16
    p_bad = np.where(y, 0.4, 0.6)  # Brier 0.36
    assert drift.performance_decay(0.16, p_good, y)[0] == pytest.approx(0.0)
    decay, recent = drift.performance_decay(0.18, p_bad, y)
    assert recent == pytest.approx(0.36) and decay == pytest.approx(0.36 / 0.18 - 1)
    assert drift.performance_decay(0.18, p_bad[:50], y[:50]) == (None, None)
    assert drift.performance_decay(None, p_bad, y)[0] is None


def test_the_score_is_the_largest_part_and_absent_parts_say_why():
    s = drift.combine(threshold=0.15, feature_psi_by_name={"a": 0.1, "b": 0.3}, prediction_psi=0.05, decay=None)
    assert s.parts == {"feature_psi": pytest.approx(0.2), "prediction_psi": 0.05}
    assert s.drift_score == pytest.approx(0.2) and s.detected
    assert "performance_decay" in s.missing and list(s.top_features) == ["b", "a"]
    calm = drift.combine(threshold=0.15, feature_psi_by_name={}, prediction_psi=None, decay=0.1)
    assert calm.drift_score == pytest.approx(0.1) and not calm.detected and set(calm.missing) == {
        "feature_psi", "prediction_psi"}
    nothing = drift.combine(threshold=0.15, feature_psi_by_name=None, prediction_psi=None, decay=None)
    assert nothing.drift_score is None and not nothing.detected and len(nothing.missing) == 3
    with pytest.raises(ValueError, match="positive"):
        drift.combine(threshold=0, feature_psi_by_name=None, prediction_psi=None, decay=None)
