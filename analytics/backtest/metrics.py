"""The figures of a run, from its equity curve and its closed trades (pure: numpy and Decimal).

The engine hands over the equity curve (one point per bar, aware UTC times), the per-bar gross
exposure, the closed trades, the initial capital and the bar length; `figures` returns a dict
that is JSON-ready (money as Decimal strings, ratios as floats, times as ISO strings, durations
in seconds) so that it can be stored as it is and two runs compared with `compare`.

Conventions, stated once:
- Per-bar returns are simple returns of the curve, e[i] / e[i-1] - 1. Sharpe and Sortino take
  the risk-free rate as 0 and annualize by sqrt(bars per year), with a year of 365 days (crypto
  trades every day) divided by the bar length. Sharpe uses the sample standard deviation
  (ddof=1); Sortino's downside deviation is sqrt(mean(min(r, 0)^2)) over all bars. Either is
  None when its deviation is 0 (or there are fewer than two returns): no risk measured means no
  ratio, not an infinite one.
- Total return and CAGR are measured against the initial capital; CAGR spans the curve's
  calendar time (first to last point), so calendar gaps count as time. CAGR is None when the
  annualized growth overflows a float (a very short run with a large return: the number would
  mean nothing). Drawdown and per-bar returns are of the curve itself.
- Ruin: a point with equity <= 0 ends the run there. Equity below zero counts as zero (a loss
  beyond the account is not a return below -100 %), later points are ignored, and the figures
  say `ruined: True` with the time: total return -100 %, CAGR -100 %, max drawdown 100 %.
- Win rate counts trades with net PnL > 0 (a trade at exactly zero is not a win). Profit factor
  is gross profit / gross loss over net trade PnL, None when no trade lost (never infinity).
- Exposure is the share of bars whose gross exposure is > 0. Turnover is traded notional (both
  legs of every trade, amount x price) over the average equity of the curve, for the whole run
  (`turnover`) and scaled to a year of the run's calendar span (`turnover_per_year`).
- Funding is signed: paid > 0, received < 0; `funding_paid_usd` is the net paid.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from core.decimals import ZERO, non_negative, positive, to_decimal
from core.enums import PositionSide

__all__ = ["FIGURE_ORDER", "YEAR", "MetricsError", "Trade", "compare", "figures"]

YEAR = timedelta(days=365)


class MetricsError(ValueError):
    """Input the figures cannot be computed from; the message names the field."""


def _aware_utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise MetricsError(f"{name} must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise MetricsError(f"{name} must be timezone-aware UTC, got naive {value.isoformat()}")
    if value.utcoffset() != timedelta(0):
        raise MetricsError(f"{name} must be in UTC, got offset {value.utcoffset()} ({value.isoformat()})")
    return value


def _number(value: object, name: str) -> Decimal:
    try:
        return to_decimal(value, name)
    except ValueError as exc:
        raise MetricsError(str(exc)) from None


@dataclass(frozen=True)
class Trade:
    """One closed trade. `pnl_usd` is net of fees and funding; `funding_usd` is signed (paid > 0)."""

    symbol: str
    side: PositionSide
    entry_time: datetime
    exit_time: datetime
    entry_price: Decimal
    exit_price: Decimal
    amount: Decimal
    fees_usd: Decimal
    funding_usd: Decimal
    pnl_usd: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise MetricsError(f"symbol must be a non-empty string, got {self.symbol!r}")
        try:
            side = PositionSide(self.side)
        except ValueError:
            raise MetricsError(f"side must be one of {[s.value for s in PositionSide]}, got {self.side!r}") from None
        _aware_utc(self.entry_time, "entry_time")
        _aware_utc(self.exit_time, "exit_time")
        if self.exit_time < self.entry_time:
            raise MetricsError(f"exit_time {self.exit_time.isoformat()} is before entry_time "
                               f"{self.entry_time.isoformat()} ({self.symbol})")
        object.__setattr__(self, "side", side)
        for name in ("entry_price", "exit_price", "amount"):
            try:
                object.__setattr__(self, name, positive(getattr(self, name), name))
            except ValueError as exc:
                raise MetricsError(str(exc)) from None
        try:
            object.__setattr__(self, "fees_usd", non_negative(self.fees_usd, "fees_usd"))
        except ValueError as exc:
            raise MetricsError(str(exc)) from None
        object.__setattr__(self, "funding_usd", _number(self.funding_usd, "funding_usd"))
        object.__setattr__(self, "pnl_usd", _number(self.pnl_usd, "pnl_usd"))

    @property
    def holding(self) -> timedelta:
        return self.exit_time - self.entry_time

    @property
    def notional_usd(self) -> Decimal:
        """Both legs: what was traded to open and to close."""
        return self.amount * (self.entry_price + self.exit_price)

    def as_json(self) -> dict:
        return {
            "symbol": self.symbol, "side": self.side.value,
            "entry_time": self.entry_time.isoformat(), "exit_time": self.exit_time.isoformat(),
            "entry_price": str(self.entry_price), "exit_price": str(self.exit_price), "amount": str(self.amount),
            "fees_usd": str(self.fees_usd), "funding_usd": str(self.funding_usd), "pnl_usd": str(self.pnl_usd),
            "holding_seconds": self.holding.total_seconds(),
        }


def _curve(times: Sequence[datetime], equity: Sequence[object]) -> tuple[list[datetime], list[Decimal]]:
    if len(times) != len(equity):
        raise MetricsError(f"times and equity must have the same length, got {len(times)} and {len(equity)}")
    if len(times) < 2:
        raise MetricsError(f"equity curve needs at least 2 points, got {len(times)}")
    ts = [_aware_utc(t, f"times[{i}]") for i, t in enumerate(times)]
    for i in range(1, len(ts)):
        if ts[i] <= ts[i - 1]:
            what = "duplicate" if ts[i] == ts[i - 1] else "unsorted"
            raise MetricsError(f"times must be strictly increasing: times[{i}] {ts[i].isoformat()} is {what} "
                               f"(times[{i - 1}] is {ts[i - 1].isoformat()})")
    return ts, [_number(e, f"equity[{i}]") for i, e in enumerate(equity)]


def _ratio(num: float, den: float, scale: float) -> float | None:
    return None if den == 0 or not math.isfinite(den) else float(num / den * scale)


def _money(d: Decimal) -> str:
    return str(d)


def _trade_figures(trades: Sequence[Trade]) -> dict:
    n = len(trades)
    pnls = [t.pnl_usd for t in trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_loss = -sum(losses, ZERO)
    net = sum(pnls, ZERO)
    return {
        "trades": n,
        "win_rate": len(wins) / n if n else None,
        "profit_factor": float(sum(wins, ZERO) / gross_loss) if gross_loss > 0 else None,
        "net_pnl_usd": _money(net),
        "average_trade_usd": _money(net / n) if n else None,
        "best_trade_usd": _money(max(pnls)) if n else None,
        "worst_trade_usd": _money(min(pnls)) if n else None,
        "average_holding_seconds": (sum((t.holding for t in trades), timedelta(0)) / n).total_seconds() if n else None,
        "fees_paid_usd": _money(sum((t.fees_usd for t in trades), ZERO)),
        "funding_paid_usd": _money(sum((t.funding_usd for t in trades), ZERO)),
    }


def figures(*, times: Sequence[datetime], equity: Sequence[object], initial_capital: object, bar: timedelta,
            gross_exposure: Sequence[object], trades: Iterable[Trade] = ()) -> dict:
    """The run's figures (see the module docstring for every convention)."""
    if not isinstance(bar, timedelta) or bar <= timedelta(0):
        raise MetricsError(f"bar must be a positive timedelta, got {bar!r}")
    capital = _number(initial_capital, "initial_capital")
    if capital <= 0:
        raise MetricsError(f"initial_capital must be > 0, got {initial_capital!r}")
    ts, eq = _curve(times, equity)
    if len(gross_exposure) != len(ts):
        raise MetricsError(f"gross_exposure must have one value per bar ({len(ts)}), got {len(gross_exposure)}")
    exposure = []
    for i, x in enumerate(gross_exposure):
        try:
            exposure.append(non_negative(x, f"gross_exposure[{i}]"))
        except ValueError as exc:
            raise MetricsError(str(exc)) from None
    trades = list(trades)
    for i, t in enumerate(trades):
        if not isinstance(t, Trade):
            raise MetricsError(f"trades[{i}] must be a Trade, got {type(t).__name__}")

    ruin = next((i for i, e in enumerate(eq) if e <= 0), None)
    if ruin is not None:
        eq = eq[:ruin] + [ZERO]
        ts = ts[:ruin + 1]
    final = eq[-1]
    values = np.array([float(e) for e in eq], dtype=float)
    returns = values[1:] / values[:-1] - 1.0
    bars_per_year = YEAR / bar
    scale = math.sqrt(bars_per_year)

    sharpe = sortino = None
    if len(returns) >= 2:
        sharpe = _ratio(returns.mean(), returns.std(ddof=1), scale)
        sortino = _ratio(returns.mean(), math.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)), scale)

    peaks = np.maximum.accumulate(values)
    drawdowns = 1.0 - values / peaks
    trough = int(np.argmax(drawdowns))
    max_dd = float(drawdowns[trough])
    peak = int(np.argmax(values[:trough + 1]))

    span = ts[-1] - ts[0]
    total_return = float(final / capital - 1)
    cagr: float | None
    if final <= 0:
        cagr = -1.0
    else:
        try:
            cagr = float(final / capital) ** (YEAR / span) - 1.0 if span > timedelta(0) else None
        except OverflowError:
            cagr = None
    calmar = cagr / max_dd if cagr is not None and max_dd > 0 else None

    notional = sum((t.notional_usd for t in trades), ZERO)
    avg_equity = float(np.mean(values))
    turnover = float(notional) / avg_equity if avg_equity > 0 else None

    per_symbol: dict[str, dict] = {}
    for symbol in sorted({t.symbol for t in trades}):
        mine = [t for t in trades if t.symbol == symbol]
        won = sum(1 for t in mine if t.pnl_usd > 0)
        per_symbol[symbol] = {
            "trades": len(mine),
            "net_pnl_usd": _money(sum((t.pnl_usd for t in mine), ZERO)),
            "win_rate": won / len(mine),
            "fees_usd": _money(sum((t.fees_usd for t in mine), ZERO)),
            "funding_usd": _money(sum((t.funding_usd for t in mine), ZERO)),
        }

    return {
        "start": ts[0].isoformat(), "end": ts[-1].isoformat(), "bars": len(ts),
        "bar_seconds": bar.total_seconds(), "bars_per_year": bars_per_year,
        "initial_capital_usd": _money(capital), "final_equity_usd": _money(final),
        "ruined": ruin is not None, "ruin_time": ts[-1].isoformat() if ruin is not None else None,
        "total_return": total_return, "cagr": cagr,
        "sharpe": sharpe, "sortino": sortino,
        "max_drawdown": max_dd,
        "max_drawdown_peak_time": ts[peak].isoformat() if max_dd > 0 else None,
        "max_drawdown_trough_time": ts[trough].isoformat() if max_dd > 0 else None,
        "calmar": calmar,
        # share of the bars up to the end of the run (ruin included) with a position
        "exposure": sum(1 for x in exposure[:len(ts)] if x > 0) / len(ts),
        "traded_notional_usd": _money(notional),
        "turnover": turnover,
        "turnover_per_year": turnover * (YEAR / span) if turnover is not None and span > timedelta(0) else None,
        **_trade_figures(trades),
        "per_symbol": per_symbol,
        "trade_list": [t.as_json() for t in trades],
    }


# The scalar figures a side-by-side comparison shows, in reading order.
FIGURE_ORDER = (
    "start", "end", "bars", "initial_capital_usd", "final_equity_usd", "ruined", "total_return", "cagr",
    "sharpe", "sortino", "max_drawdown", "calmar", "exposure", "turnover", "turnover_per_year",
    "trades", "win_rate", "profit_factor", "net_pnl_usd", "average_trade_usd", "best_trade_usd",
    "worst_trade_usd", "average_holding_seconds", "fees_paid_usd", "funding_paid_usd",
)


def _difference(a: object, b: object) -> object:
    """b - a in the figure's own kind: Decimal strings stay exact, floats stay floats; anything
    else (times, flags, a missing figure) has no difference."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return None
    if isinstance(a, str) and isinstance(b, str):
        try:
            return str(to_decimal(b, "b") - to_decimal(a, "a"))
        except ValueError:
            return None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return b - a
    return None


def compare(a: dict, b: dict) -> list[dict]:
    """Two runs' figures side by side: one row per figure, with b - a where it is a number."""
    return [{"figure": name, "a": a.get(name), "b": b.get(name), "difference": _difference(a.get(name), b.get(name))}
            for name in FIGURE_ORDER]
