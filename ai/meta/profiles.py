"""Trading profiles: the menu the meta-strategy agent chooses from (pure: no Django, no Celery).

A profile is how to trade in a context: the ensemble confidence a vote needs before it becomes a
BUY/SELL, the holding horizon in bars of the signal timeframe, the execution strategy that turns
the intent into orders, and whether to open anything at all.

- default:     today's behaviour: the ensemble's own threshold, the 12-bar horizon the models are
               trained on, SMART execution. The fixed fallback when the agent is untrained or unsure.
- selective:   the same, but only the ensemble's most confident calls (fewer, better trades when
               the models' edge is thin in a regime).
- patient:     a longer hold, entered passively with limit orders (pays the spread less; suits a
               range where price comes back to the order).
- stand_aside: opens nothing (a regime where every profile loses after costs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ai.ensemble import DEFAULT_MIN_CONFIDENCE
from ai.features.labels import DEFAULT_HORIZON_BARS
from core.enums import ExecutionStrategy


@dataclass(frozen=True)
class Profile:
    name: str
    ensemble_threshold: float  # min ensemble confidence to act, in (0.5, 1)
    horizon_bars: int  # holding horizon in bars of the signal timeframe, >= 1
    execution_strategy: ExecutionStrategy
    trade: bool  # False: the profile stands aside (no new entries)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("profile name must be a non-empty string")
        t = self.ensemble_threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or not 0.5 < t < 1.0:
            raise ValueError(f"profile {self.name}: ensemble_threshold must be in (0.5, 1), got {t!r}")
        h = self.horizon_bars
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValueError(f"profile {self.name}: horizon_bars must be an integer >= 1, got {h!r}")
        try:
            object.__setattr__(self, "execution_strategy", ExecutionStrategy(self.execution_strategy))
        except ValueError:
            raise ValueError(f"profile {self.name}: unknown execution_strategy {self.execution_strategy!r}") from None
        if not isinstance(self.trade, bool):
            raise ValueError(f"profile {self.name}: trade must be a bool, got {self.trade!r}")

    def as_dict(self) -> dict:
        return {"name": self.name, "ensemble_threshold": self.ensemble_threshold, "horizon_bars": self.horizon_bars,
                "execution_strategy": str(self.execution_strategy), "trade": self.trade}


DEFAULT_PROFILE = Profile("default", DEFAULT_MIN_CONFIDENCE, DEFAULT_HORIZON_BARS, ExecutionStrategy.SMART, True)

PROFILES: tuple[Profile, ...] = (
    DEFAULT_PROFILE,
    Profile("selective", 0.7, DEFAULT_HORIZON_BARS, ExecutionStrategy.SMART, True),
    Profile("patient", DEFAULT_MIN_CONFIDENCE, 2 * DEFAULT_HORIZON_BARS, ExecutionStrategy.LIMIT, True),
    Profile("stand_aside", DEFAULT_MIN_CONFIDENCE, DEFAULT_HORIZON_BARS, ExecutionStrategy.SMART, False),
)

_BY_NAME = {p.name: p for p in PROFILES}


def profile_named(name: str) -> Profile:
    """The menu's profile called `name`; ValueError naming it when there is none."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown profile {name!r}: known profiles are {', '.join(_BY_NAME)}") from None
