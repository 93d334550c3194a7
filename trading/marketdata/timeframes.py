"""Timeframes: names, durations, alignment and resampling (pure functions, no Django)."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from core.enums import Timeframe
from trading.exchanges.errors import BadTimeframe

# Supported timeframes and their length in seconds, finest first (core.enums.Timeframe).
TIMEFRAME_SECONDS: dict[str, int] = {t.value: t.seconds for t in Timeframe}
TIMEFRAMES: tuple[str, ...] = tuple(TIMEFRAME_SECONDS)


def seconds(timeframe: str) -> int:
    """The timeframe's length; BadTimeframe (the exchange layer's error) for an unknown one."""
    try:
        return Timeframe.parse(timeframe).seconds
    except ValueError as exc:
        raise BadTimeframe(str(exc)) from None


def milliseconds(timeframe: str) -> int:
    return seconds(timeframe) * 1000


def floor_ms(timestamp_ms: int, timeframe: str) -> int:
    """Start of the bar (UTC-aligned) that contains timestamp_ms."""
    step = milliseconds(timeframe)
    return timestamp_ms - timestamp_ms % step


def to_datetime(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {dt.isoformat()} must be timezone-aware (UTC)")
    return int(dt.timestamp() * 1000)


def finest_source(target: str, available: list[str] | tuple[str, ...]) -> str | None:
    """The finest stored timeframe that divides `target` (None if none can build it)."""
    t = seconds(target)
    for tf in TIMEFRAMES:
        if tf in available and t % TIMEFRAME_SECONDS[tf] == 0 and TIMEFRAME_SECONDS[tf] <= t:
            return tf
    return None


def resample(ohlcv: np.ndarray, source: str, target: str, *, complete_only: bool = True) -> np.ndarray:
    """Aggregate rows [open_time_ms, open, high, low, close, volume] (sorted by time) from
    `source` to `target` bars aligned on UTC boundaries.

    A target bar is open of its first source bar, max high, min low, close of its last, sum of
    volume. With complete_only, buckets missing any source bar are dropped (a gap or the
    still-forming last bar), so a resampled bar never pretends to know what it did not see.
    """
    src_s, dst_s = seconds(source), seconds(target)
    if dst_s % src_s or dst_s < src_s:
        raise BadTimeframe(f"cannot build {target} bars from {source} bars")
    if len(ohlcv) == 0:
        return np.empty((0, 6))
    ohlcv = np.asarray(ohlcv, dtype=float)
    step = dst_s * 1000
    buckets = (ohlcv[:, 0] // step).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], len(ohlcv)]
    out = np.empty((len(starts), 6))
    out[:, 0] = buckets[starts] * step
    out[:, 1] = ohlcv[starts, 1]
    out[:, 2] = np.maximum.reduceat(ohlcv[:, 2], starts)
    out[:, 3] = np.minimum.reduceat(ohlcv[:, 3], starts)
    out[:, 4] = ohlcv[ends - 1, 4]
    out[:, 5] = np.add.reduceat(ohlcv[:, 5], starts)
    if complete_only:
        out = out[(ends - starts) == dst_s // src_s]
    return out
