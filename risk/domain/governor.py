"""The safety governor's decision: what to do about the account's drawdown and losing streak.

Pure: the caller gathers the inputs and carries out the action (mode change, entry block,
emergency stop). Checked in order: emergency drawdown -> emergency_stop; losing streak ->
reduce_only; daily drawdown -> block_entries until the next UTC midnight.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from risk.domain.modes import Mode
from risk.domain.policy import Policy

__all__ = ["GovernorAction", "GovernorInput", "assess", "consecutive_losses", "drawdown_pct", "next_utc_midnight"]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)

ActionKind = Literal["none", "reduce_only", "block_entries", "emergency_stop"]


@dataclass(frozen=True)
class GovernorInput:
    policy: Policy
    mode: Mode
    equity_usd: Decimal
    day_start_equity_usd: Decimal
    consecutive_losses: int
    entries_blocked_until: datetime | None
    now: datetime  # aware


@dataclass(frozen=True)
class GovernorAction:
    kind: ActionKind
    reason: str
    drawdown_pct: Decimal
    block_until: datetime | None = None


def _aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {dt.isoformat()}")
    return dt


def next_utc_midnight(now: datetime) -> datetime:
    """The first 00:00 UTC strictly after `now` (an aware datetime, any zone)."""
    day = _aware(now, "now").astimezone(UTC).date()
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def consecutive_losses(pnls_newest_first: Iterable[Decimal]) -> int:
    """How many results in a row, from the newest, were losses (pnl < 0). A 0 is not a loss and
    ends the streak."""
    n = 0
    for pnl in pnls_newest_first:
        if pnl < 0:
            n += 1
        else:
            break
    return n


def drawdown_pct(equity_usd: Decimal, day_start_equity_usd: Decimal) -> Decimal:
    """(day start - equity) / day start * 100; 0 when the day start is not positive. Negative on a
    winning day."""
    if day_start_equity_usd <= 0:
        return _ZERO
    return (day_start_equity_usd - equity_usd) / day_start_equity_usd * _HUNDRED


def _pct(d: Decimal) -> str:
    return f"{d:.2f}%"


def _num(d: Decimal) -> str:
    return format(d, "f")


def assess(inp: GovernorInput) -> GovernorAction:
    p = inp.policy
    now = _aware(inp.now, "now")
    mode = Mode(inp.mode)
    dd = drawdown_pct(inp.equity_usd, inp.day_start_equity_usd)
    where = f"equity {inp.equity_usd:.2f} USD vs day start {inp.day_start_equity_usd:.2f} USD"
    if dd >= p.emergency_drawdown_pct:
        if mode == Mode.HALTED:
            return GovernorAction("none", f"daily drawdown {_pct(dd)} >= emergency {_num(p.emergency_drawdown_pct)}% "
                                          "but already HALTED", dd)
        return GovernorAction(
            "emergency_stop",
            f"daily drawdown {_pct(dd)} ({where}) >= emergency drawdown {_num(p.emergency_drawdown_pct)}%: "
            f"halt{' and flatten positions' if p.flatten_on_emergency else ''}", dd)
    if inp.consecutive_losses >= p.emergency_consecutive_losses and mode in (Mode.NORMAL, Mode.SHADOW):
        return GovernorAction(
            "reduce_only",
            f"{inp.consecutive_losses} consecutive losing trades >= limit {p.emergency_consecutive_losses}: "
            "REDUCE_ONLY until an operator resumes", dd)
    if dd >= p.max_daily_drawdown_pct:
        blocked = inp.entries_blocked_until
        if blocked is None or now >= _aware(blocked, "entries_blocked_until"):
            until = next_utc_midnight(now)
            return GovernorAction(
                "block_entries",
                f"daily drawdown {_pct(dd)} ({where}) >= max daily drawdown {_num(p.max_daily_drawdown_pct)}%: "
                f"no new entries until {until.isoformat()}", dd, until)
    return GovernorAction("none", "within limits", dd)
