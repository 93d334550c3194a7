"""Time-ordered splits with a purge gap: no training label reaches into the test window. Pure numpy.

Samples are rows with an open time `t_ms` (several symbols share a timestamp) and the open
time of the last bar their label reads, `label_end_ms` (t + h bars; later across a gap in the
data). Splits are laid on the sorted unique timestamps (the "grid"); sizes are in grid steps,
i.e. bars.

    |---- train ----|-- purge --|---- test ----|-- embargo --|---- test ----| ...

- purge: the last `purge_bars` (>= the label horizon) timestamps before a test window are in
  no training set, and every training sample must have label_end_ms < the test window's first
  timestamp. The second condition is the guarantee (it holds across gaps in the data too);
  the first keeps the gap visible and at least h bars even when label ends are not known.
- embargo: `embargo_bars` timestamps after each test window belong to no test window, so the
  labels of one fold's last test samples (which run h bars past its end) do not overlap the
  next fold's test window: fold scores are measured on outcomes that do not overlap.
- rolling: the training window is the last `train_size` timestamps before the purge;
  expanding: everything before the purge.

Property (tested with hypothesis): for every split, max(label_end_ms[train]) < min(t_ms[test]).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np


class SplitError(ValueError):
    """The requested layout does not fit the data (too few timestamps, bad sizes)."""


def _grid(t_ms: np.ndarray, label_end_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(t_ms, dtype=np.int64)
    end = np.asarray(label_end_ms, dtype=np.int64)
    if t.shape != end.shape or t.ndim != 1:
        raise SplitError("t_ms and label_end_ms must be 1-d arrays of the same length")
    if (end < t).any():
        raise SplitError("a label cannot end before its sample's time")
    grid = np.unique(t)
    return t, end, grid, np.searchsorted(grid, t)


def walk_forward(t_ms: np.ndarray, label_end_ms: np.ndarray, *, horizon_bars: int, n_splits: int = 5,
                 test_size: int | None = None, mode: Literal["expanding", "rolling"] = "expanding",
                 train_size: int | None = None, purge_bars: int | None = None, embargo_bars: int | None = None,
                 min_train_size: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (train_idx, test_idx), int64 sample indices in ascending order, for `n_splits`
    consecutive test windows ending at the last timestamp. Sizes are in timestamps (bars).
    Defaults: purge and embargo = horizon_bars; test_size such that the first training window
    is about as long as one test window."""
    if horizon_bars < 1:
        raise SplitError("horizon_bars must be at least 1")
    purge = horizon_bars if purge_bars is None else purge_bars
    embargo = horizon_bars if embargo_bars is None else embargo_bars
    if purge < horizon_bars:
        raise SplitError(f"purge_bars ({purge}) must be at least the label horizon ({horizon_bars} bars)")
    if embargo < 0 or n_splits < 1:
        raise SplitError("embargo_bars must be >= 0 and n_splits >= 1")
    if mode not in ("expanding", "rolling"):
        raise SplitError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
    if mode == "rolling" and (train_size is None or train_size < 1):
        raise SplitError("a rolling walk-forward needs train_size >= 1 (timestamps)")
    t, end, grid, pos = _grid(t_ms, label_end_ms)
    n_grid = len(grid)
    if test_size is None:
        test_size = (n_grid - purge - embargo * (n_splits - 1)) // (n_splits + 1)
    if test_size < 1:
        raise SplitError(f"{n_grid} timestamps are too few for {n_splits} test windows with a {purge}-bar "
                         f"purge and a {embargo}-bar embargo")
    first_test_start = n_grid - n_splits * test_size - (n_splits - 1) * embargo
    if first_test_start - purge < 1:
        raise SplitError(f"no training data before the first test window: {n_grid} timestamps, "
                         f"{n_splits} x {test_size} test + {purge} purge + {embargo} embargo between windows")

    folds = []
    for k in range(n_splits):
        test_start = first_test_start + k * (test_size + embargo)
        test_end = test_start + test_size
        train_end = test_start - purge
        train_start = 0 if mode == "expanding" else max(0, train_end - train_size)
        train = np.flatnonzero((pos >= train_start) & (pos < train_end) & (end < grid[test_start]))
        test = np.flatnonzero((pos >= test_start) & (pos < test_end))
        if len(train) < min_train_size:
            raise SplitError(f"fold {k}: {len(train)} training samples < min_train_size {min_train_size}")
        folds.append((train, test))
    yield from folds


def train_validation_split(t_ms: np.ndarray, label_end_ms: np.ndarray, *, horizon_bars: int,
                           validation_fraction: float = 0.2, purge_bars: int | None = None,
                           min_train_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One split: the last `validation_fraction` of the timestamps validate, the earlier ones
    (minus the purge) train."""
    if not 0 < validation_fraction < 1:
        raise SplitError("validation_fraction must be in (0, 1)")
    n_grid = len(np.unique(np.asarray(t_ms)))
    test_size = max(1, math.ceil(validation_fraction * n_grid))
    return next(walk_forward(t_ms, label_end_ms, horizon_bars=horizon_bars, n_splits=1, test_size=test_size,
                             purge_bars=purge_bars, embargo_bars=0, min_train_size=min_train_size))
