"""The ensemble vote (pure): four calibrated P(up) in, one signal out.

Weights come from each model's recent out-of-sample skill: the Brier skill score against a
coin flip, 1 - Brier / 0.25, over its last realized outcomes (a model no better than a coin
flip gets no weight; a model without a track record yet gets the prior weight). The ensemble
probability is the weighted mean of the models that answered; a model that is missing,
failed or timed out is simply not in `predictions` (the caller logs it and marks that module
DEGRADED) and the others decide. With none left there is no signal (`EnsembleVote.reason`).

Signal fields follow `signal.generated` (qtweb/events/schemas.py):
- action: BUY when p >= min_confidence_threshold, SELL when p <= 1 - threshold, else HOLD;
- confidence: max(p, 1 - p); score: 2p - 1 in [-1, 1];
- ensemble_agreement: the weight share of voters on the side of the ensemble;
- models_voted: how many models answered.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.enums import SignalAction

DEFAULT_MIN_CONFIDENCE = 0.6
# Brier score of always answering 0.5: the line a model must beat to earn weight.
COIN_FLIP_BRIER = 0.25
# Weight of a model with fewer than MIN_OUTCOMES realized outcomes (no track record yet).
PRIOR_WEIGHT = 0.5
MIN_OUTCOMES = 30
# Outcomes remembered per model for its recent skill.
PERFORMANCE_WINDOW = 500


@dataclass(frozen=True)
class EnsembleVote:
    probability_up: float | None
    action: str  # BUY / SELL / HOLD, or NONE when no model answered
    confidence: float
    score: float
    ensemble_agreement: float
    models_voted: int
    weights: dict[str, float]
    reason: str = ""

    @property
    def has_signal(self) -> bool:
        return self.probability_up is not None


@dataclass
class PerformanceTracker:
    """Recent realized outcomes per model -> weights. JSON-able through as_dict/from_dict."""

    window: int = PERFORMANCE_WINDOW
    outcomes: dict[str, deque] = field(default_factory=dict)

    def record(self, model: str, probability_up: float, went_up: bool) -> None:
        if not 0.0 <= probability_up <= 1.0 or math.isnan(probability_up):
            raise ValueError(f"{model}: probability {probability_up!r} outside [0, 1]")
        self.outcomes.setdefault(model, deque(maxlen=self.window)).append((float(probability_up), int(went_up)))

    def brier(self, model: str) -> float | None:
        rows = self.outcomes.get(model)
        if not rows or len(rows) < MIN_OUTCOMES:
            return None
        return sum((p - y) ** 2 for p, y in rows) / len(rows)

    def weight(self, model: str) -> float:
        b = self.brier(model)
        if b is None:
            return PRIOR_WEIGHT
        return max(0.0, 1.0 - b / COIN_FLIP_BRIER)

    def weights(self, models) -> dict[str, float]:
        return {m: self.weight(m) for m in models}

    def as_dict(self) -> dict:
        return {"window": self.window, "outcomes": {m: list(v) for m, v in self.outcomes.items()}}

    @classmethod
    def from_dict(cls, data: Mapping) -> PerformanceTracker:
        t = cls(window=int(data.get("window", PERFORMANCE_WINDOW)))
        for m, rows in (data.get("outcomes") or {}).items():
            t.outcomes[m] = deque(((float(p), int(y)) for p, y in rows), maxlen=t.window)
        return t


def vote(predictions: Mapping[str, float], weights: Mapping[str, float], *,
         min_confidence_threshold: float = DEFAULT_MIN_CONFIDENCE) -> EnsembleVote:
    """Combine the answering models' P(up). `predictions` holds only models that answered."""
    if not 0.5 < min_confidence_threshold <= 1.0:
        raise ValueError(f"min_confidence_threshold must be in (0.5, 1], got {min_confidence_threshold}")
    valid = {}
    for model, p in predictions.items():
        if p is None or not isinstance(p, int | float) or math.isnan(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{model}: probability {p!r} is not in [0, 1]")
        valid[model] = float(p)
    if not valid:
        return EnsembleVote(None, "NONE", 0.0, 0.0, 0.0, 0, {}, reason="no model answered")
    w = {m: max(0.0, float(weights.get(m, PRIOR_WEIGHT))) for m in valid}
    total = sum(w.values())
    if total <= 0:  # every voter has lost its skill: fall back to an equal say
        w = {m: 1.0 for m in valid}
        total = float(len(valid))
    norm = {m: x / total for m, x in w.items()}
    p = sum(norm[m] * valid[m] for m in valid)
    if p >= min_confidence_threshold:
        action = SignalAction.BUY
    elif p <= 1.0 - min_confidence_threshold:
        action = SignalAction.SELL
    else:
        action = SignalAction.HOLD
    up = p >= 0.5
    agreement = sum(norm[m] for m in valid if (valid[m] >= 0.5) == up)
    return EnsembleVote(
        probability_up=p, action=action, confidence=max(p, 1.0 - p), score=2.0 * p - 1.0,
        ensemble_agreement=agreement, models_voted=len(valid), weights=norm,
    )
