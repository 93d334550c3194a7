"""Judging a challenger (pure): the held-out window, the purge, the score and the decision rule."""
import numpy as np
import pytest

from analytics.learning import challenger as judging

BAR = 300_000


def test_no_training_label_reaches_the_judging_window_and_the_boundary_is_excluded():
    h = 12
    t = np.repeat(np.arange(400) * BAR, 3)  # 400 bars, 3 symbols
    label_end = t + h * BAR
    train, judge = judging.split_for_judging(t, label_end, judge_bars=100, bar_ms=BAR)
    start = 300 * BAR
    assert t[judge].min() == start and len(judge) == 100 * 3
    assert np.all(label_end[train] < start)  # every training label ends before the window opens
    assert label_end[train].max() == start - BAR  # ... the last one the bar before: nothing wasted
    boundary = np.flatnonzero(label_end == start)  # a label ending exactly at the window's first bar
    assert len(boundary) and not np.isin(boundary, train).any()
    assert not np.isin(judge, train).any()
    with pytest.raises(ValueError, match="no samples"):
        judging.split_for_judging(np.array([], dtype=np.int64), np.array([], dtype=np.int64), judge_bars=5,
                                  bar_ms=BAR)


def _window(n_bars=240, symbols=4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.repeat(np.arange(n_bars) * BAR, symbols)
    sym = np.tile([f"S{i}" for i in range(symbols)], n_bars)
    fwd = rng.normal(0, 0.01, size=len(t))
    y = (fwd > 0).astype(np.int64)
    return judging.JudgingWindow(t, sym, fwd, y, np.abs(fwd) > 0.002, 12, BAR)


def test_a_model_that_knows_the_future_scores_far_above_one_that_stands_aside():
    w = _window()
    oracle = np.where(w.fwd_log_return > 0, 0.9, 0.1)
    aside = np.full(len(w.t_ms), 0.5)
    good, idle = judging.score(oracle, w), judging.score(aside, w)
    assert good["score_bps"] > 50 and good["n_trades"] > 10 and good["hit_rate"] > 0.95
    assert idle["score_bps"] == 0.0 and idle["n_trades"] == 0
    iv = judging.paired_interval(aside, oracle, w)
    assert iv["low_bps"] > 0 and iv["mean_bps"] == pytest.approx(good["score_bps"] - idle["score_bps"])
    with pytest.raises(ValueError, match="probabilities for"):
        judging.score(oracle[:-1], w)


@pytest.mark.parametrize(("champ", "chall", "low", "trades", "promote", "why"), [
    (1.0, 5.0, 0.5, 40, True, "better beyond noise"),
    (1.0, 1.5, 0.1, 40, False, "not better by the margin"),
    (1.0, 5.0, -0.2, 40, False, "within noise"),
    (-3.0, 0.0, 0.5, 0, False, "fewer than 10 trades"),  # standing aside beats a losing champion
])
def test_the_decision_needs_the_margin_an_interval_above_zero_and_trades(champ, chall, low, trades, promote, why):
    ok, text = judging.decide({"score_bps": champ}, {"score_bps": chall, "n_trades": trades},
                              {"low_bps": low, "high_bps": low + 8}, margin_bps=1.0)
    assert ok is promote and why in text


def test_without_a_champion_the_challenger_serves():
    ok, text = judging.decide(None, {"score_bps": -2.0, "n_trades": 0}, None, margin_bps=1.0)
    assert ok and "no champion" in text
