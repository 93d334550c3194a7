"""Momentum: the log return over the last `lookback` bars, as a z-score against its own recent
history (`window` bars). Long when the z-score rises through +threshold, short when it falls
through -threshold; the position is closed when the z-score crosses back through zero.

Confidence is |z| / (2 x threshold), capped at 1. The strategy declares its own stops: a
stop loss and a take profit in percent of the entry price.
"""
from __future__ import annotations

import numpy as np

from ai.strategies.base import Param, Signals, Strategy, crossed_above, trailing_mean


class Momentum(Strategy):
    name = "momentum"
    timeframe = "5m"
    params = {
        "lookback": Param(1, 500, 12, int),
        "window": Param(10, 2000, 96, int),
        "threshold": Param(0.1, 5.0, 1.5, float),
        "stop_loss_pct": Param(0.1, 50.0, 2.0, float),
        "take_profit_pct": Param(0.1, 100.0, 4.0, float),
    }

    @property
    def startup_bars(self) -> int:
        return int(self.p["lookback"] + self.p["window"])

    def indicators(self, bars: np.ndarray) -> dict[str, np.ndarray]:
        close = bars[:, 4]
        k, w = int(self.p["lookback"]), int(self.p["window"])
        ret = np.full(len(close), np.nan)
        if len(close) > k:
            ret[k:] = np.log(close[k:] / close[:-k])
        mean = trailing_mean(ret, w)
        mean_sq = trailing_mean(ret * ret, w)
        # Sample variance from the two running means; the running sums can leave a tiny negative.
        var = np.clip(mean_sq - mean * mean, 0.0, None) * w / (w - 1)
        std = np.sqrt(var)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(std > 1e-12, (ret - mean) / std, 0.0)
        z[np.isnan(mean)] = np.nan
        return {"ret": ret, "ret_mean": mean, "ret_std": std, "zscore": z}

    def signals(self, bars: np.ndarray, indicators: dict[str, np.ndarray]) -> Signals:
        z = indicators["zscore"]
        thr = float(self.p["threshold"])
        n = len(z)
        up = crossed_above(z, np.full(n, thr))
        down = crossed_above(np.full(n, -thr), z)
        entry = np.where(up, 1, np.where(down, -1, 0)).astype(np.int8)
        zero = np.zeros(n)
        exit_ = crossed_above(z, zero) | crossed_above(zero, z)
        confidence = np.where(entry != 0, np.clip(np.abs(np.nan_to_num(z)) / (2.0 * thr), 0.0, 1.0), 0.0)
        return Signals(entry=entry, exit=exit_, confidence=confidence,
                       stop_loss_pct=np.full(n, float(self.p["stop_loss_pct"])),
                       take_profit_pct=np.full(n, float(self.p["take_profit_pct"])))
