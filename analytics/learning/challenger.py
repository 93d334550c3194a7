"""Challenger against champion: train on recent history, judge both on the held-out tail.

The window is the last CLM_RETRAIN_DAYS of stored bars. Its last CLM_JUDGE_BARS bars are the
judging window; the challenger is trained only on samples whose label ends before it (purged by
the horizon, so nothing it learned from reaches the window). Both models, each loaded from its
checksummed artifact (a corrupt or mismatched challenger fails here and the champion keeps
serving), predict every bar of the judging window, and each trades it with the system's own rule
(ai.evaluation.walkforward: BUY at P(up) >= the policy threshold, SELL at <= 1 - threshold, one
decision per horizon, fees and slippage on every change of position). This is one walk-forward
step on the same recent window for both, net of costs.

score = mean net return per decision period, in basis points. The challenger is promoted when
its score beats the champion's by more than CLM_PROMOTION_MARGIN_BPS, the 95 % block-bootstrap
interval of the paired per-period difference lies above zero, and it traded at least
MIN_TRADES_TO_PROMOTE times; otherwise it is rejected.
A champion trained on part of the judging window is judged partly in sample, which favours the
champion: the comparison errs towards keeping what serves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ai.ensemble import DEFAULT_MIN_CONFIDENCE
from ai.evaluation.walkforward import (
    BARS_PER_YEAR_5M,
    Costs,
    actions_to_positions,
    bootstrap_mean_interval,
    classification,
    decision_grid,
    trade,
)

BPS = 10_000.0
# A challenger must have traded at least this often on the judging window to replace a champion.
MIN_TRADES_TO_PROMOTE = 10


@dataclass(frozen=True)
class JudgingWindow:
    """The samples of the judging window (all bars with a known future, band 0)."""

    t_ms: np.ndarray
    symbol: np.ndarray
    fwd_log_return: np.ndarray
    y: np.ndarray
    decisive: np.ndarray  # moves beyond the fee band: the labels the models were trained on
    horizon: int
    bar_ms: int


def split_for_judging(t_ms: np.ndarray, label_end_ms: np.ndarray, *, judge_bars: int, bar_ms: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, judging indices): the judging window is the last `judge_bars` bars; a
    training sample's label must end before the window opens."""
    t = np.asarray(t_ms, dtype=np.int64)
    if len(t) == 0:
        raise ValueError("no samples to split")
    start = int(t.max()) - (judge_bars - 1) * bar_ms
    judge = np.flatnonzero(t >= start)
    train = np.flatnonzero(np.asarray(label_end_ms, dtype=np.int64) < start)
    return train, judge


def _traded(p: np.ndarray, w: JudgingWindow, min_confidence: float, costs: Costs | None) -> dict[str, Any]:
    costs = costs or Costs()
    p = np.asarray(p, dtype=np.float64)
    if p.shape != w.t_ms.shape:
        raise ValueError(f"{len(p)} probabilities for {len(w.t_ms)} samples")
    grid = set(decision_grid(w.t_ms, w.horizon, w.bar_ms).tolist())
    on = np.array([t in grid for t in w.t_ms.tolist()], dtype=bool)
    return trade(w.t_ms[on], w.symbol[on], w.fwd_log_return[on], actions_to_positions(p[on], min_confidence),
                 horizon_bars=w.horizon, bar_ms=w.bar_ms, cost_per_side=costs.per_side,
                 periods_per_year=BARS_PER_YEAR_5M * (300_000 / w.bar_ms) / w.horizon)


def score(p: np.ndarray, w: JudgingWindow, *, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
          costs: Costs | None = None) -> dict[str, Any]:
    """One model's figures on the judging window; `score_bps` is what the decision compares."""
    traded = _traded(p, w, min_confidence, costs)
    period = np.asarray(traded["period_returns"], dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return {
        "score_bps": float(period.mean()) * BPS if len(period) else 0.0,
        "net_return": traded["total_return"],
        "n_periods": int(len(period)),
        "n_trades": traded["n_trades"],
        "hit_rate": traded["hit_rate"],
        "classification": classification(p[w.decisive], w.y[w.decisive]) if w.decisive.any() else {},
    }


def decide(champion: dict[str, Any] | None, challenger: dict[str, Any], interval: dict[str, Any] | None, *,
           margin_bps: float) -> tuple[bool, str]:
    """(promote?, why). Without a champion the challenger serves (the type had nothing).

    Otherwise all three must hold: the challenger's score beats the champion's by more than the
    margin; the 95 % interval of the paired per-period difference lies above zero (a difference
    the window's noise explains is no reason to swap models); and the challenger traded at least
    MIN_TRADES_TO_PROMOTE times (one that never trades scores 0 and would beat any losing
    champion by standing aside)."""
    if champion is None:
        return True, (f"no champion of this type serves; challenger {challenger['score_bps']:+.2f} bps per period "
                      "net of costs")
    diff = challenger["score_bps"] - champion["score_bps"]
    low = interval.get("low_bps") if interval else None
    text = (f"challenger {challenger['score_bps']:+.2f} bps vs champion {champion['score_bps']:+.2f} bps per period "
            f"net of costs ({diff:+.2f}, 95% [{_bps(low)}, {_bps(interval.get('high_bps') if interval else None)}]; "
            f"margin {margin_bps:.2f}; challenger trades {challenger['n_trades']})")
    if diff <= margin_bps:
        return False, f"{text}: not better by the margin"
    if low is None or low <= 0:
        return False, f"{text}: the difference is within noise"
    if challenger["n_trades"] < MIN_TRADES_TO_PROMOTE:
        return False, f"{text}: fewer than {MIN_TRADES_TO_PROMOTE} trades"
    return True, f"{text}: better beyond noise"


def _bps(x) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def paired_interval(champion_p: np.ndarray, challenger_p: np.ndarray, w: JudgingWindow, *,
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE, costs: Costs | None = None) -> dict[str, Any]:
    """95 % block-bootstrap interval of the per-period difference challenger - champion (bps),
    paired by period: both trade the same decision times."""
    a = np.asarray(_traded(champion_p, w, min_confidence, costs)["period_returns"])
    b = np.asarray(_traded(challenger_p, w, min_confidence, costs)["period_returns"])
    iv = bootstrap_mean_interval((b - a) * BPS)
    return {"mean_bps": iv["mean"], "low_bps": iv["lo"], "high_bps": iv["hi"], "n_periods": iv["n"]}
