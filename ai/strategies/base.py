"""The strategy interface. Pure numpy: no framework, no I/O.

A strategy reads bars, the (n, 6) float array the rest of the system uses (open time in ms,
open, high, low, close, volume; oldest first), and answers per bar:

- `indicators(bars) -> {name: (n,) array}`: whatever it computes from the bars (NaN while a
  window is not full). They are returned with the signals so that `lookahead_analysis` can
  show which of them peeks at the future;
- `signals(bars, indicators) -> Signals`: `entry` +1 (open long), -1 (open short) or 0,
  `exit` (close the open position at this bar), `confidence` in [0, 1] and, optionally, the
  strategy's own `stop_loss_pct` / `take_profit_pct` per bar (percent of the entry price; NaN
  = no stop of its own at that bar).

Bar t's answer may read bars 0..t only: a signal is acted on after bar t closes, so a value
that reads bar t+1 would trade on the future. `lookahead_analysis` checks this.

Tunable parameters are declared in `params` as `Param(low, high, default, kind)`; an instance
gets its values in `self.p` (defaults, overridden by what the caller passes, each checked
against its range), so a later parameter search can draw from the declared ranges.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

BAR_COLUMNS = ("t_ms", "open", "high", "low", "close", "volume")
SIGNAL_COLUMNS = ("entry", "exit", "confidence", "stop_loss_pct", "take_profit_pct")


class StrategyError(Exception):
    """A strategy could not be found, built or run, or gave malformed output; the message names it."""


class UnknownStrategy(StrategyError, LookupError):
    pass


class StrategyParamError(StrategyError, ValueError):
    pass


@dataclass(frozen=True)
class Param:
    """A tunable parameter: its range [low, high], its default and whether it is an int or a float."""

    low: float
    high: float
    default: float
    kind: type = float

    def __post_init__(self):
        if self.kind not in (int, float):
            raise ValueError(f"Param kind must be int or float, got {self.kind!r}")
        for label in ("low", "high", "default"):
            v = getattr(self, label)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"Param {label} must be a finite number, got {v!r}")
            if self.kind is int and v != int(v):
                raise ValueError(f"Param {label} of an int parameter must be a whole number, got {v!r}")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"Param default {self.default} outside [{self.low}, {self.high}]")

    def coerce(self, strategy: str, name: str, value) -> int | float:
        """`value` (a number, or text from a command line) as this parameter's kind, in range."""
        where = f"strategy {strategy}: parameter {name}"
        if isinstance(value, bool):
            raise StrategyParamError(f"{where}={value!r} is not a number")
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise StrategyParamError(f"{where}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise StrategyParamError(f"{where}={value!r} is not finite")
        if self.kind is int:
            if number != int(number):
                raise StrategyParamError(f"{where}={value!r} must be a whole number")
            number = int(number)
        if not self.low <= number <= self.high:
            raise StrategyParamError(f"{where}={number} outside [{self.kind(self.low)}, {self.kind(self.high)}]")
        return number


@dataclass(frozen=True)
class Signals:
    """One value per bar in each array (see the module docstring)."""

    entry: np.ndarray
    exit: np.ndarray
    confidence: np.ndarray
    stop_loss_pct: np.ndarray | None = None
    take_profit_pct: np.ndarray | None = None

    def columns(self) -> dict[str, np.ndarray]:
        out = {"entry": self.entry, "exit": self.exit, "confidence": self.confidence}
        if self.stop_loss_pct is not None:
            out["stop_loss_pct"] = self.stop_loss_pct
        if self.take_profit_pct is not None:
            out["take_profit_pct"] = self.take_profit_pct
        return out


class Strategy:
    """Subclass it, declare `params`, and implement `signals` (and usually `indicators`)."""

    name: str = ""
    timeframe: str = "5m"
    # Bars of history before the first bar whose answer is meaningful (windows filling up).
    # Subclasses whose warm-up depends on a parameter override it with a property.
    startup_bars: int = 0
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, params: Mapping[str, object] | None = None):
        if not self.name:
            self.name = type(self).__name__
        given = dict(params or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise StrategyParamError(f"strategy {self.name} has no parameter {', '.join(unknown)} "
                                     f"(its parameters: {known})")
        self.p: dict[str, int | float] = {
            k: spec.coerce(self.name, k, given[k]) if k in given else spec.kind(spec.default)
            for k, spec in self.params.items()}
        self.check_params()

    def check_params(self) -> None:
        """Refuse combinations the ranges cannot express (raise StrategyParamError naming them)."""

    def indicators(self, bars: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def signals(self, bars: np.ndarray, indicators: dict[str, np.ndarray]) -> Signals:
        raise NotImplementedError(f"strategy {self.name} does not implement signals()")

    def __repr__(self) -> str:
        return f"<strategy {self.name} {self.p}>"


@dataclass(frozen=True)
class StrategyRun:
    """What one run of a strategy over some bars produced, checked."""

    indicators: dict[str, np.ndarray]
    signals: Signals

    def columns(self) -> dict[str, np.ndarray]:
        """Every per-bar output by name: the indicators, then the signal columns."""
        return {**self.indicators, **self.signals.columns()}


def check_bars(bars) -> np.ndarray:
    """`bars` as a float (n, 6) array, or ValueError naming what is wrong."""
    arr = np.asarray(bars, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != len(BAR_COLUMNS):
        raise ValueError(f"bars must be an (n, 6) array of {', '.join(BAR_COLUMNS)}; got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ValueError(f"bars: row {int(np.argmax(bad))} has a NaN or infinite value")
    if len(arr) > 1:
        back = np.diff(arr[:, 0]) <= 0
        if back.any():
            i = int(np.argmax(back)) + 1
            raise ValueError(f"bars: open time at row {i} ({int(arr[i, 0])}) does not increase")
    return arr


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _column(strategy: str, label: str, values, n_bars: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n_bars:
        raise StrategyError(f"strategy {strategy}: {label} has shape {arr.shape}, expected ({n_bars},) "
                            "(one value per bar)")
    if arr.dtype.kind not in "biuf":
        raise StrategyError(f"strategy {strategy}: {label} holds {arr.dtype} values, not numbers")
    return arr


def validate_signals(signals: Signals, n_bars: int, strategy_name: str) -> Signals:
    """`signals` with normalized dtypes (entry int8, exit bool, floats), or StrategyError naming
    the strategy, the column and the first bad bar."""
    s = strategy_name
    if not isinstance(signals, Signals):
        raise StrategyError(f"strategy {s}: signals() returned {type(signals).__name__}, not Signals")
    entry = _column(s, "entry", signals.entry, n_bars).astype(float)
    bad = ~np.isin(entry, (-1.0, 0.0, 1.0))
    if bad.any():
        i = _first(bad)
        raise StrategyError(f"strategy {s}: entry at bar {i} is {float(entry[i])!r}, not -1, 0 or 1")
    exit_ = _column(s, "exit", signals.exit, n_bars).astype(float)
    bad = ~np.isin(exit_, (0.0, 1.0))
    if bad.any():
        i = _first(bad)
        raise StrategyError(f"strategy {s}: exit at bar {i} is {float(exit_[i])!r}, not a boolean")
    conf = _column(s, "confidence", signals.confidence, n_bars).astype(float)
    bad = ~np.isfinite(conf)
    if bad.any():
        i = _first(bad)
        raise StrategyError(f"strategy {s}: confidence at bar {i} is {float(conf[i])!r} (NaN or infinite)")
    bad = (conf < 0.0) | (conf > 1.0)
    if bad.any():
        i = _first(bad)
        raise StrategyError(f"strategy {s}: confidence at bar {i} is {float(conf[i])!r}, outside [0, 1]")
    stops = {}
    for label in ("stop_loss_pct", "take_profit_pct"):
        values = getattr(signals, label)
        if values is None:
            stops[label] = None
            continue
        arr = _column(s, label, values, n_bars).astype(float)
        bad = np.isinf(arr) | (arr <= 0.0)  # NaN is "no stop of its own at this bar"
        if bad.any():
            i = _first(bad)
            raise StrategyError(f"strategy {s}: {label} at bar {i} is {float(arr[i])!r}; a stop is a positive "
                                "percentage (NaN for none)")
        stops[label] = arr
    return Signals(entry.astype(np.int8), exit_.astype(bool), conf, stops["stop_loss_pct"], stops["take_profit_pct"])


def _where(bars: np.ndarray) -> str:
    if not len(bars):
        return "0 bars"
    return f"{len(bars)} bars (last bar {len(bars) - 1}, t_ms={int(bars[-1, 0])})"


def run_strategy(strategy: Strategy, bars) -> StrategyRun:
    """Indicators then signals over `bars`, checked; anything the strategy raises or returns
    malformed becomes a StrategyError naming the strategy, the step and the bars."""
    arr = check_bars(bars)
    n = len(arr)
    name = strategy.name
    try:
        indicators = strategy.indicators(arr.copy())
    except Exception as exc:
        raise StrategyError(f"strategy {name} raised at indicators() on {_where(arr)}: "
                            f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(indicators, Mapping):
        raise StrategyError(f"strategy {name}: indicators() returned {type(indicators).__name__}, not a dict")
    checked = {}
    for key, values in indicators.items():
        if not isinstance(key, str) or key in SIGNAL_COLUMNS:
            raise StrategyError(f"strategy {name}: indicator name {key!r} must be a string other than "
                                f"{', '.join(SIGNAL_COLUMNS)}")
        checked[key] = _column(name, f"indicator {key}", values, n).astype(float)
    try:
        signals = strategy.signals(arr.copy(), {k: v.copy() for k, v in checked.items()})
    except Exception as exc:
        raise StrategyError(f"strategy {name} raised at signals() on {_where(arr)}: "
                            f"{type(exc).__name__}: {exc}") from exc
    return StrategyRun(checked, validate_signals(signals, n, name))


# --- causal helpers for strategies ---------------------------------------------------------------


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values up to and including each bar; NaN until the window is
    full or while it holds a NaN. A running sum, so a prefix of the series gives the same prefix."""
    x = np.asarray(x, dtype=float)
    out = np.full(len(x), np.nan)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if len(x) < window:
        return out
    filled = np.where(np.isnan(x), 0.0, x)
    csum = np.concatenate(([0.0], np.cumsum(filled)))
    nans = np.concatenate(([0], np.cumsum(np.isnan(x))))
    sums = csum[window:] - csum[:-window]
    has_nan = (nans[window:] - nans[:-window]) > 0
    out[window - 1:] = np.where(has_nan, np.nan, sums / window)
    return out


def crossed_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at bar t when a > b at t and a <= b at t-1 (False where either is NaN)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.zeros(len(a), dtype=bool)
    with np.errstate(invalid="ignore"):
        out[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    return out
