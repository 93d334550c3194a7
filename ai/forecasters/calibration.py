"""Probability calibration and the metrics every forecaster reports.

A model's raw P(up) is mapped through a monotone calibrator fitted on the validation set:
isotonic regression when there are enough samples (>= ISOTONIC_MIN_SAMPLES, and
>= ISOTONIC_MIN_PER_CLASS of each class), else Platt scaling (a sigmoid of the raw logit, with
Platt's smoothed targets). When both are possible, the one with the lower out-of-fold log-loss
(below) is kept: isotonic's steps can cost more log-loss than they fix on an already
well-calibrated booster. Both are stored as plain numbers (JSON), applied with numpy.

`calibrated_report` gives honest metrics for the calibrated model: the validation set is split
into two time-ordered halves, a calibrator is fitted on each half and applied to the other, and
log-loss, Brier, accuracy, AUC and ECE are computed on those out-of-fold probabilities. (The
validation set also chose the early-stopping point, so these figures are still slightly
optimistic; the walk-forward evaluation is where the out-of-sample numbers come from.)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

ISOTONIC_MIN_SAMPLES = 1000
ISOTONIC_MIN_PER_CLASS = 100
ECE_BINS = 10
# Isotonic steps can reach exactly 0 or 1 at the ends; nothing is ever that certain.
PROB_FLOOR = 1e-3
_LOGIT_CLIP = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z


class Calibrator:
    method: str = ""

    def transform(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Calibrator:
        method = d.get("method")
        if method == "isotonic":
            return IsotonicCalibrator(np.asarray(d["x"], dtype=np.float64), np.asarray(d["y"], dtype=np.float64))
        if method == "sigmoid":
            return SigmoidCalibrator(float(d["a"]), float(d["b"]))
        raise ValueError(f"unknown calibration method {method!r}")


class IsotonicCalibrator(Calibrator):
    method = "isotonic"

    def __init__(self, x: np.ndarray, y: np.ndarray):
        if x.ndim != 1 or x.shape != y.shape or x.size < 1 or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            raise ValueError("isotonic calibrator needs matching non-decreasing x and y")
        self.x, self.y = x, y

    def transform(self, p: np.ndarray) -> np.ndarray:
        return np.clip(np.interp(p, self.x, self.y), PROB_FLOOR, 1.0 - PROB_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x.tolist(), "y": self.y.tolist()}


class SigmoidCalibrator(Calibrator):
    method = "sigmoid"

    def __init__(self, a: float, b: float):
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError("sigmoid calibrator needs finite a, b")
        self.a, self.b = a, b

    def transform(self, p: np.ndarray) -> np.ndarray:
        return np.clip(_sigmoid(self.a * _logit(p) + self.b), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b}


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return IsotonicCalibrator(np.asarray(iso.X_thresholds_, dtype=np.float64),
                              np.asarray(iso.y_thresholds_, dtype=np.float64))


def fit_sigmoid(p: np.ndarray, y: np.ndarray, max_iter: int = 100) -> SigmoidCalibrator:
    """Platt scaling on the raw logit: P = sigmoid(a * logit(p) + b), fitted by Newton's method
    with backtracking (as in Lin, Lin & Weng 2007) on Platt's smoothed targets ((n+ + 1)/(n+ + 2)
    and 1/(n- + 2)), which keep a small sample from producing 0/1 probabilities."""
    z = _logit(p)
    y = np.asarray(y, dtype=np.float64)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    t = np.where(y > 0.5, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(a: float, b: float) -> float:
        f = a * z + b
        return float(np.sum(np.logaddexp(0.0, f) - t * f))

    a, b = 0.0, math.log((n_pos + 1.0) / (n_neg + 1.0))
    current = loss(a, b)
    for _ in range(max_iter):
        q = _sigmoid(a * z + b)
        w = q * (1.0 - q)
        g = np.array([np.sum((q - t) * z), np.sum(q - t)])
        h = np.array([[np.sum(w * z * z) + 1e-12, np.sum(w * z)], [np.sum(w * z), np.sum(w) + 1e-12]])
        step = np.linalg.solve(h, g)
        lr = 1.0
        while lr > 1e-10:
            na, nb = a - lr * step[0], b - lr * step[1]
            candidate = loss(na, nb)
            if candidate <= current + 1e-4 * lr * float(g @ -step):
                break
            lr *= 0.5
        else:
            break
        a, b, improvement, current = na, nb, current - candidate, candidate
        if np.max(np.abs(lr * step)) < 1e-10 or improvement < 1e-12 * max(1.0, abs(current)):
            break
    return SigmoidCalibrator(float(a), float(b))


def choose_method(y: np.ndarray) -> str:
    y = np.asarray(y)
    n_pos = int(np.count_nonzero(y))
    if y.size >= ISOTONIC_MIN_SAMPLES and min(n_pos, y.size - n_pos) >= ISOTONIC_MIN_PER_CLASS:
        return "isotonic"
    return "sigmoid"


def fit_calibrator(p: np.ndarray, y: np.ndarray, method: str | None = None) -> Calibrator:
    method = method or choose_method(y)
    if method == "isotonic":
        return fit_isotonic(p, y)
    if method == "sigmoid":
        return fit_sigmoid(p, y)
    raise ValueError(f"unknown calibration method {method!r}")


# --- metrics -----------------------------------------------------------------------------


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE over equal-width probability bins: sum over bins of (bin share) * |mean p - mean y|."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.size == 0:
        return math.nan
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    return float(np.sum(np.abs(sum_p - sum_y)) / p.size)


def classification_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """log_loss, brier, accuracy (threshold 0.5), auc (None with one class), ece."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    pc = np.clip(p, 1e-15, 1.0 - 1e-15)
    auc = None
    if 0 < y.sum() < y.size:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y, p))
    return {
        "log_loss": float(-np.mean(y * np.log(pc) + (1.0 - y) * np.log1p(-pc))),
        "brier": float(np.mean((p - y) ** 2)),
        "accuracy": float(np.mean((p > 0.5) == (y > 0.5))),
        "auc": auc,
        "ece": expected_calibration_error(p, y),
    }


def crossfit_calibrated(p: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """Out-of-fold calibrated probabilities: calibrator fitted on one time-ordered half of the
    validation set, applied to the other, and vice versa. The method is the one chosen for the
    whole set, fitted on half the data: if anything, pessimistic."""
    n = p.size
    half = n // 2
    out = np.empty(n, dtype=np.float64)
    for fit_sl, apply_sl in ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))):
        yf = y[fit_sl]
        if 0 < yf.sum() < yf.size:
            out[apply_sl] = fit_calibrator(p[fit_sl], yf, method).transform(p[apply_sl])
        else:  # a half with one class cannot be calibrated: leave the raw probability
            out[apply_sl] = p[apply_sl]
    return out


def calibrated_report(p_raw: np.ndarray, y: np.ndarray) -> tuple[Calibrator, dict[str, Any]]:
    """Fit the calibrator on all of (p_raw, y) and report metrics: the calibrated ones out of
    fold (see module docstring) under the plain names, the raw model's under raw_*."""
    p_raw = np.asarray(p_raw, dtype=np.float64)
    y = np.asarray(y)
    candidates = ["isotonic", "sigmoid"] if choose_method(y) == "isotonic" else ["sigmoid"]
    scored = []
    for method in candidates:
        scored.append((classification_metrics(crossfit_calibrated(p_raw, y, method), y), method))
    oof, method = min(scored, key=lambda s: s[0]["log_loss"])
    calibrator = fit_calibrator(p_raw, y, method)
    metrics: dict[str, Any] = dict(oof)
    metrics.update({f"raw_{k}": v for k, v in classification_metrics(p_raw, y).items()})
    metrics["calibration_method"] = method
    return calibrator, metrics
