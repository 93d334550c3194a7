"""Moving-average crossover: long when the fast mean of the close crosses above the slow one,
short when it crosses below. Each cross also closes the position the previous cross opened.

Confidence grows with how far apart the two means are at the cross, relative to the slow mean
(`full_confidence_gap_pct` apart counts as certain), so a cross through a flat market says
less than a cross on a clear turn.
"""
from __future__ import annotations

import numpy as np

from ai.strategies.base import Param, Signals, Strategy, StrategyParamError, crossed_above, trailing_mean


class MACrossover(Strategy):
    name = "ma_crossover"
    timeframe = "5m"
    params = {
        "fast": Param(2, 200, 10, int),
        "slow": Param(3, 1000, 30, int),
        "full_confidence_gap_pct": Param(0.01, 10.0, 0.5, float),
    }

    @property
    def startup_bars(self) -> int:
        return int(self.p["slow"])

    def check_params(self) -> None:
        if self.p["fast"] >= self.p["slow"]:
            raise StrategyParamError(f"strategy {self.name}: parameter fast={self.p['fast']} must be below "
                                     f"slow={self.p['slow']}")

    def indicators(self, bars: np.ndarray) -> dict[str, np.ndarray]:
        close = bars[:, 4]
        return {"sma_fast": trailing_mean(close, int(self.p["fast"])),
                "sma_slow": trailing_mean(close, int(self.p["slow"]))}

    def signals(self, bars: np.ndarray, indicators: dict[str, np.ndarray]) -> Signals:
        fast, slow = indicators["sma_fast"], indicators["sma_slow"]
        up = crossed_above(fast, slow)
        down = crossed_above(slow, fast)
        entry = np.where(up, 1, np.where(down, -1, 0)).astype(np.int8)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap_pct = np.abs(fast - slow) / slow * 100.0
        confidence = np.where(entry != 0, np.clip(gap_pct / self.p["full_confidence_gap_pct"], 0.0, 1.0), 0.0)
        return Signals(entry=entry, exit=entry != 0, confidence=np.nan_to_num(confidence, nan=0.0))
