"""Drift statistics (pure numpy): how far a model's world has moved from the one it was trained on.

A model's drift score has three parts, each on the scale of the population stability index
(PSI: 0 = same distribution; by the usual reading < 0.1 stable, 0.1-0.25 moved, > 0.25 moved a
lot):

- feature_psi: the mean PSI over the model's input features, recent rows against the rows of
  its training window (decile histograms kept with the model at training time);
- prediction_psi: the PSI of the model's recent P(up) against its P(up) on its validation set;
- performance_decay: how much worse its Brier score on recent realized outcomes is than on its
  validation set, as a fraction of the validation Brier: max(0, recent / validation - 1).

drift_score = the largest part present. Each part alone says the model no longer sees the world
it was validated on; averaging would let two calm parts hide the third. A part is absent when
there is too little to judge (fewer than MIN_ROWS rows or MIN_OUTCOMES outcomes) and is then
recorded as such, never as 0; with no part at all the score is None: unknown, not calm.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Deciles: enough resolution to see a shift of scale or location, few enough bins that a day of
# one symbol's bars (288) fills each with ~29 rows.
N_BINS = 10
# Bin shares are floored at this before the log: an empty bin would make PSI infinite.
SHARE_FLOOR = 1e-4
# Fewer recent rows than this give no feature or prediction part (PSI of tiny samples is noise).
MIN_ROWS = 100
# Fewer resolved outcomes than this give no performance part.
MIN_OUTCOMES = 100
# Rows kept for a reference histogram: quantiles of 50k rows are exact to a fraction of a percent.
MAX_REFERENCE_ROWS = 50_000
PARTS = ("feature_psi", "prediction_psi", "performance_decay")


def histogram(values: np.ndarray, n_bins: int = N_BINS, seed: int = 0) -> dict:
    """A reference histogram: inner quantile edges and the share of rows in each bin.

    Edges repeat for a feature with few distinct values; they are made unique (fewer bins)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise ValueError("no finite values to build a histogram from")
    if len(v) > MAX_REFERENCE_ROWS:
        v = np.random.default_rng(seed).choice(v, MAX_REFERENCE_ROWS, replace=False)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    return {"edges": edges.tolist(), "shares": (counts / counts.sum()).tolist(), "n": int(len(v))}


def psi(reference: Mapping, values: np.ndarray) -> float | None:
    """PSI of `values` against a `histogram()`; None when fewer than MIN_ROWS finite values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) < MIN_ROWS:
        return None
    edges = np.asarray(reference["edges"], dtype=np.float64)
    ref = np.asarray(reference["shares"], dtype=np.float64)
    if len(ref) != len(edges) + 1:
        raise ValueError(f"a histogram with {len(edges)} edges needs {len(edges) + 1} shares, has {len(ref)}")
    cur = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(ref)) / len(v)
    ref = np.maximum(ref, SHARE_FLOOR)
    cur = np.maximum(cur, SHARE_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def feature_reference(x: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    """{feature: histogram} of a (rows, features) matrix, e.g. a model's training rows."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"X must be (rows, {len(names)}) for the {len(names)} feature names, got {x.shape}")
    return {name: histogram(x[:, j]) for j, name in enumerate(names)}


def feature_psi(reference: Mapping[str, Mapping], x: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """{feature: PSI} for the features present in both; features with too few rows are left out."""
    x = np.asarray(x)
    out = {}
    for j, name in enumerate(names):
        if name in reference:
            value = psi(reference[name], x[:, j])
            if value is not None:
                out[name] = value
    return out


def brier(p: np.ndarray, went_up: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(went_up, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def performance_decay(validation_brier: float | None, recent_p: np.ndarray, recent_went_up: np.ndarray
                      ) -> tuple[float | None, float | None]:
    """(decay, recent Brier): decay = max(0, recent / validation - 1); (None, ...) when there are
    fewer than MIN_OUTCOMES outcomes or no validation Brier to compare with."""
    if len(recent_p) < MIN_OUTCOMES:
        return None, None
    recent = brier(recent_p, recent_went_up)
    if validation_brier is None or not np.isfinite(validation_brier) or validation_brier <= 0:
        return None, recent
    return max(0.0, recent / float(validation_brier) - 1.0), recent


@dataclass(frozen=True)
class DriftScore:
    drift_score: float | None  # None: no part could be computed, the drift is unknown (not zero)
    threshold: float
    parts: dict[str, float]  # only the parts that could be computed
    top_features: dict[str, float] = field(default_factory=dict)  # the features that moved most
    missing: dict[str, str] = field(default_factory=dict)  # part -> why it is absent

    @property
    def detected(self) -> bool:
        return self.drift_score is not None and self.drift_score > self.threshold


def combine(*, threshold: float, feature_psi_by_name: Mapping[str, float] | None, prediction_psi: float | None,
            decay: float | None, missing: Mapping[str, str] | None = None, top_n: int = 5) -> DriftScore:
    """One score from the parts present (their maximum, see the module docstring)."""
    if not threshold > 0:
        raise ValueError(f"the drift threshold must be positive, got {threshold}")
    parts: dict[str, float] = {}
    why = dict(missing or {})
    top: dict[str, float] = {}
    if feature_psi_by_name:
        parts["feature_psi"] = float(np.mean(list(feature_psi_by_name.values())))
        top = dict(sorted(feature_psi_by_name.items(), key=lambda kv: -kv[1])[:top_n])
    else:
        why.setdefault("feature_psi", "no recent feature rows")
    if prediction_psi is not None:
        parts["prediction_psi"] = float(prediction_psi)
    else:
        why.setdefault("prediction_psi", "too few recent predictions or no validation reference")
    if decay is not None:
        parts["performance_decay"] = float(decay)
    else:
        why.setdefault("performance_decay", f"fewer than {MIN_OUTCOMES} realized outcomes or no validation Brier")
    score = float(max(parts.values())) if parts else None
    return DriftScore(score, float(threshold), parts, top, {k: v for k, v in why.items() if k not in parts})
