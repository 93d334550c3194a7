"""A gymnasium environment for position sizing over the paper market's candles.

Each step is one trading decision at bar t on one symbol:

observation (float32, Box, bounded)
    [p_win, volatility, drawdown, exposure, recent_pnl]
    p_win       calibrated probability that the trade's direction is right, in [0, 1]. Historical
                model predictions are not stored, so over candles it is a causal stand-in: a
                logistic of the momentum z-score (return over `momentum_bars` / its volatility),
                direction = its sign, p_win = max(p_up, 1 - p_up). Tests and callers may pass
                their own probabilities instead (`probabilities=`).
    volatility  per-bar standard deviation of log returns over `vol_window` bars, clipped to [0, 1]
    drawdown    1 - equity / peak equity of the episode, in [0, 1]
    exposure    the fraction of the allowed size currently held (the previous action), in [0, 1]
    recent_pnl  mean return on equity of the last `pnl_window` trades, clipped to [-1, 1]
action (Box [0, 1], shape (1,))
    fraction of the allowed size (allowed size = `max_exposure` x equity)
reward
    the position's return on equity over the next `horizon` bars after fees (entry and exit at
    `fee_rate` each), divided by the volatility over that horizon (risk-adjusted), minus
    `drawdown_penalty` x the increase in drawdown the trade caused. Clipped to [-10, 10].

Only bars up to t are used to build the observation at t (no lookahead); the reward uses t+h.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

OBS_NAMES = ("p_win", "volatility", "drawdown", "exposure", "recent_pnl")
OBS_LOW = np.array([0.0, 0.0, 0.0, 0.0, -1.0], dtype=np.float32)
OBS_HIGH = np.array([1.0, 1.0, 1.0, 1.0, 1.0], dtype=np.float32)
DEFAULT_FEE_RATE = 0.0005  # the paper market's taker fee (trading/exchanges/paper/engine.py)


def causal_volatility(closes: np.ndarray, window: int) -> np.ndarray:
    """vol[t] = std of the last `window` log returns ending at t (NaN before enough bars)."""
    lr = np.diff(np.log(closes), prepend=np.nan)
    out = np.full(len(closes), np.nan)
    for t in range(window, len(closes)):
        out[t] = np.std(lr[t - window + 1:t + 1])
    return out


def momentum_probability(closes: np.ndarray, vol: np.ndarray, bars: int, scale: float = 1.0) -> np.ndarray:
    """Causal P(up) stand-in: logistic(scale x return over `bars` / (vol x sqrt(bars)))."""
    p = np.full(len(closes), 0.5)
    for t in range(bars, len(closes)):
        v = vol[t]
        if not np.isfinite(v) or v <= 0:
            continue
        z = math.log(closes[t] / closes[t - bars]) / (v * math.sqrt(bars))
        p[t] = 1.0 / (1.0 + math.exp(-scale * max(-30.0, min(30.0, z))))
    return p


class SizingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, series: Sequence[np.ndarray], *, probabilities: Sequence[np.ndarray] | None = None,
                 horizon: int = 12, vol_window: int = 20, momentum_bars: int = 12, pnl_window: int = 5,
                 episode_length: int = 64, max_exposure: float = 1.0, fee_rate: float = DEFAULT_FEE_RATE,
                 drawdown_penalty: float = 5.0):
        super().__init__()
        if horizon < 1 or vol_window < 2 or episode_length < 1:
            raise ValueError("horizon >= 1, vol_window >= 2, episode_length >= 1")
        self.horizon, self.vol_window, self.pnl_window = horizon, vol_window, pnl_window
        self.episode_length, self.max_exposure = episode_length, max_exposure
        self.fee_rate, self.drawdown_penalty = fee_rate, drawdown_penalty
        self.warmup = max(vol_window, momentum_bars) + 1
        self._series: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for i, raw in enumerate(series):
            closes = np.asarray(raw, dtype=float)
            if closes.ndim == 2:  # rows [open_time_ms, open, high, low, close, volume]
                closes = closes[:, 4]
            if len(closes) < self.warmup + horizon + 2 or not np.all(np.isfinite(closes)) or np.any(closes <= 0):
                continue  # too short or unusable: left out
            vol = causal_volatility(closes, vol_window)
            if probabilities is not None:
                p_up = np.clip(np.asarray(probabilities[i], dtype=float), 0.0, 1.0)
                if p_up.shape != closes.shape:
                    raise ValueError("probabilities must have one value per bar")
            else:
                p_up = momentum_probability(closes, vol, momentum_bars)
            direction = np.where(p_up >= 0.5, 1.0, -1.0)
            self._series.append((closes, vol, np.maximum(p_up, 1.0 - p_up), direction))
        if not self._series:
            raise ValueError(f"no series long enough: need at least {self.warmup + horizon + 2} positive bars")
        self.observation_space = spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._reset_state(0, self.warmup)

    def _reset_state(self, k: int, t: int) -> None:
        self._k, self._t, self._steps = k, t, 0
        self._equity = self._peak = 1.0
        self._exposure = 0.0
        self._pnls: list[float] = []

    def _obs(self) -> np.ndarray:
        closes, vol, p_win, _ = self._series[self._k]
        v = vol[self._t]
        drawdown = 1.0 - self._equity / self._peak
        recent = float(np.mean(self._pnls[-self.pnl_window:])) if self._pnls else 0.0
        obs = np.array([p_win[self._t], v if np.isfinite(v) else 0.0, drawdown, self._exposure, recent])
        return np.clip(obs, OBS_LOW, OBS_HIGH).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        k = int(self.np_random.integers(len(self._series)))
        closes = self._series[k][0]
        last_start = len(closes) - self.horizon - 1
        t = int(self.np_random.integers(self.warmup, max(self.warmup + 1, last_start)))
        self._reset_state(k, t)
        return self._obs(), {"symbol_index": k, "t": t}

    def step(self, action):
        a = float(np.clip(np.asarray(action, dtype=float).reshape(-1)[0], 0.0, 1.0))
        closes, vol, _, direction = self._series[self._k]
        t, h = self._t, self.horizon
        gross = direction[t] * (closes[t + h] / closes[t] - 1.0)
        r = a * self.max_exposure * (gross - 2.0 * self.fee_rate)  # return on equity
        dd_before = 1.0 - self._equity / self._peak
        self._equity = max(1e-9, self._equity * (1.0 + r))
        self._peak = max(self._peak, self._equity)
        dd_after = 1.0 - self._equity / self._peak
        risk = vol[t] * math.sqrt(h) if np.isfinite(vol[t]) and vol[t] > 0 else 1e-3
        reward = r / max(risk, 1e-4) - self.drawdown_penalty * max(0.0, dd_after - dd_before)
        reward = float(np.clip(reward, -10.0, 10.0))
        self._pnls.append(r)
        self._exposure = a
        self._steps += 1
        self._t = t + h
        truncated = self._steps >= self.episode_length or self._t + h >= len(closes)
        terminated = self._equity < 0.5  # lost half the equity: the episode is over
        info = {"pnl": r, "equity": self._equity}
        return self._obs(), reward, terminated, truncated, info


def paper_series(timeframe: str = "5m", n: int = 2000, exchange: str = "paper") -> list[np.ndarray]:
    """The last n stored bars of every active symbol of the paper market (DB access)."""
    from trading.marketdata.selectors import last_bars
    from trading.models import Symbol

    ids = list(Symbol.objects.filter(exchange=exchange, active=True).values_list("pk", flat=True))
    return [rows for rows in last_bars(ids, timeframe, n).values() if len(rows)]
