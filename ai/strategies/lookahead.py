"""Lookahead analysis: does a strategy's answer at bar t change when the bars after t are cut off?

The strategy runs once on the full bars, then on the bars cut at several lengths k (each cut
keeps bars 0..k-1). Every indicator and signal value of a cut run is compared with the full
run's value at the same bar; any that differs read a bar the cut removed, i.e. the future.
This is the check freqtrade's lookahead-analysis makes, done on every bar of every cut rather
than only on the signal bars. Pure numpy: no framework.

Values are compared with a tolerance of 1e-9 relative (1e-12 absolute), NaN equal to NaN: a
causal computation gives the same prefix on a shorter series, and the tolerance only absorbs
rounding of sums taken in a different order, not a value that moved.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ai.strategies.base import Strategy, StrategyError, check_bars, run_strategy

RTOL = 1e-9
ATOL = 1e-12
DEFAULT_CUTS = 20


@dataclass(frozen=True)
class Difference:
    bar: int  # index in the full bars
    t_ms: int  # its open time
    column: str  # indicator or signal column
    full: float  # value on the full bars
    cut: float  # value on the bars cut after `cut_length` bars
    cut_length: int

    def describe(self) -> str:
        return (f"bar {self.bar} (t_ms={self.t_ms}) {self.column}: {self.full!r} on the full bars, "
                f"{self.cut!r} with the bars cut after bar {self.cut_length - 1}")


@dataclass
class LookaheadReport:
    strategy: str
    n_bars: int
    cut_lengths: list[int]
    differences: list[Difference] = field(default_factory=list)

    @property
    def biased(self) -> bool:
        return bool(self.differences)

    def columns(self) -> list[str]:
        return sorted({d.column for d in self.differences})


def cut_lengths(n_bars: int, startup_bars: int, n_cuts: int = DEFAULT_CUTS) -> list[int]:
    """Up to `n_cuts` cut lengths spread evenly from startup_bars + 1 to n_bars - 1 (the last
    always included): each cut keeps at least the strategy's warm-up plus one bar."""
    if n_cuts < 1:
        raise ValueError(f"n_cuts must be at least 1, got {n_cuts}")
    first = max(1, int(startup_bars) + 1)
    last = n_bars - 1
    if last < first:
        raise ValueError(f"{n_bars} bars leave nothing to cut after the strategy's {startup_bars} startup bars: "
                         f"give at least {first + 1} bars")
    return sorted({int(round(x)) for x in np.linspace(last, first, min(n_cuts, last - first + 1))})


def _differs(full: np.ndarray, cut: np.ndarray) -> np.ndarray:
    full, cut = full.astype(float), cut.astype(float)
    same = np.isclose(full, cut, rtol=RTOL, atol=ATOL, equal_nan=True)
    return ~same


def lookahead_analysis(strategy: Strategy, bars, *, lengths: list[int] | None = None, n_cuts: int = DEFAULT_CUTS,
                       progress: Callable[[int, int], None] | None = None) -> LookaheadReport:
    """Run `strategy` on `bars` and on the cuts; the report lists every (bar, column) whose value
    on some cut differs from the full run (first cut that shows it), ordered by bar then column.
    A column the full run has and a cut lacks (or the reverse) is a difference at the cut's last bar."""
    arr = check_bars(bars)
    n = len(arr)
    if lengths is None:
        lengths = cut_lengths(n, strategy.startup_bars, n_cuts)
    bad = [k for k in lengths if not 1 <= k < n]
    if bad:
        raise ValueError(f"cut lengths must be between 1 and {n - 1} bars, got {bad}")
    full = run_strategy(strategy, arr).columns()
    report = LookaheadReport(strategy.name, n, sorted(lengths))
    seen: set[tuple[int, str]] = set()
    for i, k in enumerate(report.cut_lengths):
        try:
            cut = run_strategy(strategy, arr[:k]).columns()
        except StrategyError as exc:
            raise StrategyError(f"{exc} (lookahead cut after bar {k - 1})") from exc
        for column in sorted(set(full) | set(cut)):
            if column not in full or column not in cut:
                key = (k - 1, column)
                if key not in seen:
                    seen.add(key)
                    report.differences.append(Difference(
                        k - 1, int(arr[k - 1, 0]), column,
                        float(full[column][k - 1]) if column in full else float("nan"),
                        float(cut[column][k - 1]) if column in cut else float("nan"), k))
                continue
            for b in np.flatnonzero(_differs(full[column][:k], cut[column])):
                key = (int(b), column)
                if key in seen:
                    continue
                seen.add(key)
                report.differences.append(Difference(int(b), int(arr[b, 0]), column, float(full[column][b]),
                                                     float(cut[column][b]), k))
        if progress is not None:
            progress(i + 1, len(report.cut_lengths))
    report.differences.sort(key=lambda d: (d.bar, d.column))
    return report
