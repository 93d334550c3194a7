"""Direction labels over a horizon, with a neutral band that covers a round trip's costs. Pure numpy.

The label at bar t reads the close of bar t + h: it looks ahead by definition, which is what
a label is for; forward returns are never features (compute.py reads no bar after t).

    fwd_t = log(close[t + h] / close[t])
    label = 1 (up) if fwd_t > band, 0 (down) if fwd_t < -band, NaN (excluded) otherwise

A move inside the band would not pay for entering and leaving (taker fee and slippage on each
side), so it is neither a win nor a loss to learn from: it is left out, and so are the last h
bars, whose future is not known yet. The band is compared with the log return; at 0.2 % the
difference from the simple return (band^2 / 2 = 2e-6) is immaterial.
"""
from __future__ import annotations

import numpy as np

# Binance USDⓈ-M taker fee (0.05 %) and the paper exchange's typical slippage on the demo
# universe's liquid names, per side, as fractions.
DEFAULT_TAKER_FEE_RATE = 0.0005
DEFAULT_SLIPPAGE_RATE = 0.0005
DEFAULT_HORIZON_BARS = 12  # one hour of 5m bars


def neutral_band(taker_fee_rate: float = DEFAULT_TAKER_FEE_RATE, slippage_rate: float = DEFAULT_SLIPPAGE_RATE) -> float:
    """Round-trip cost as a fraction: fee and slippage on entry and on exit."""
    if taker_fee_rate < 0 or slippage_rate < 0:
        raise ValueError("fee and slippage rates must be >= 0")
    return 2.0 * (taker_fee_rate + slippage_rate)


DEFAULT_BAND = neutral_band()  # 0.002


def forward_log_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """log(close[t + horizon] / close[t]); NaN for the last `horizon` rows."""
    if horizon < 1:
        raise ValueError("horizon must be at least 1 bar")
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    if len(close) > horizon:
        with np.errstate(all="ignore"):
            out[:-horizon] = np.log(close[horizon:]) - np.log(close[:-horizon])
    return out


def direction_labels(close: np.ndarray, horizon: int = DEFAULT_HORIZON_BARS, band: float = DEFAULT_BAND) -> np.ndarray:
    """float64 per bar: 1.0 up, 0.0 down, NaN inside the band [-band, band] or without a future."""
    if band < 0:
        raise ValueError("band must be >= 0")
    fwd = forward_log_return(close, horizon)
    return labels_from_returns(fwd, band)


def labels_from_returns(fwd: np.ndarray, band: float = DEFAULT_BAND) -> np.ndarray:
    out = np.full(fwd.shape, np.nan)
    out[fwd > band] = 1.0
    out[fwd < -band] = 0.0
    return out
