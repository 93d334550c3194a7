"""Position math, pure (plain Python, no Django): PnL, average entry, ATR-based initial stops,
the trailing stop with break-even, and whether a bar hit the stop or the target.

Everything is `Decimal` (int and str are accepted too, floats are converted through their
shortest repr: 0.1 -> Decimal("0.1")). Sides are "long" and "short"; amounts are positive
(the side gives the direction); percentages are in percent (2 means 2 %). Invalid arguments,
non-positive prices among them, raise ValueError naming the argument.

Bar by bar, a position is managed in this order: `exit_hit` with the stop in force during the
bar (the one computed after the previous bar), then, if still open, `update_trailing` with the
bar to get the stop for the next one. Updating first would let a bar's high move the stop and
the same bar's low take it out, an ordering the bar cannot tell.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.decimals import non_negative, positive, round_to_step, to_decimal
from core.enums import CloseReason, PositionSide

__all__ = [
    "EXIT_REASONS",
    "TrailingState",
    "average_entry",
    "exit_hit",
    "initial_stops",
    "pnl_pct",
    "realized_pnl_usd",
    "unrealized_pnl_usd",
    "update_trailing",
]

EXIT_REASONS = (CloseReason.STOP_LOSS, CloseReason.TAKE_PROFIT, CloseReason.TRAILING_STOP)
HUNDRED = Decimal(100)
DEFAULT_FALLBACK_STOP_PCT = Decimal("2")  # stop 2 % from the entry when there is no ATR
DEFAULT_FALLBACK_TAKE_PCT = Decimal("3")  # target 3 % from the entry when there is no ATR
# Without a tick size no level goes below this fraction of the entry price (stands for a tick).
MIN_LEVEL_FRACTION = Decimal("0.0001")


_dec = to_decimal
_positive = positive
_non_negative = non_negative


def _optional_positive(value: object, name: str) -> Decimal | None:
    """None for a missing, zero or negative value (no ATR yet), else the Decimal."""
    if value is None:
        return None
    d = _dec(value, name)
    return d if d > 0 else None


def _sign(side: str) -> int:
    try:
        return PositionSide(side).sign
    except ValueError:
        raise ValueError(f"side must be one of {', '.join(PositionSide)}, got {side!r}") from None


def _round(x: Decimal, tick: Decimal | None, rounding: str) -> Decimal:
    return x if tick is None else round_to_step(x, tick, rounding)


# --------------------------------------------------------------------------- PnL


def unrealized_pnl_usd(side: str, entry_price: Decimal, mark_price: Decimal, amount: Decimal) -> Decimal:
    """(mark - entry) * amount for a long, (entry - mark) * amount for a short (quote currency)."""
    sign = _sign(side)
    entry = _positive(entry_price, "entry_price")
    mark = _positive(mark_price, "mark_price")
    qty = _non_negative(amount, "amount")
    return sign * (mark - entry) * qty


def realized_pnl_usd(
    side: str, entry_price: Decimal, exit_price: Decimal, amount: Decimal, fees_usd: Decimal
) -> Decimal:
    """The closed trade's PnL net of `fees_usd` (all fees paid, entry and exit; a negative
    value is a net rebate)."""
    fees = _dec(fees_usd, "fees_usd")
    sign = _sign(side)
    entry = _positive(entry_price, "entry_price")
    exit_ = _positive(exit_price, "exit_price")
    qty = _non_negative(amount, "amount")
    return sign * (exit_ - entry) * qty - fees


def pnl_pct(side: str, entry_price: Decimal, exit_price: Decimal, leverage: Decimal = Decimal(1)) -> Decimal:
    """Return on margin in percent: the price move from the entry in percent, times the
    leverage, positive when the move favours the side."""
    sign = _sign(side)
    entry = _positive(entry_price, "entry_price")
    exit_ = _positive(exit_price, "exit_price")
    lev = _positive(leverage, "leverage")
    return sign * (exit_ - entry) / entry * HUNDRED * lev


def average_entry(old_amount: Decimal, old_entry: Decimal, add_amount: Decimal, add_price: Decimal) -> Decimal:
    """The amount-weighted entry price after adding `add_amount` at `add_price` to a position
    of `old_amount` at `old_entry` (with old_amount 0, old_entry is ignored)."""
    old_qty = _non_negative(old_amount, "old_amount")
    add_qty = _non_negative(add_amount, "add_amount")
    price = _positive(add_price, "add_price")
    if old_qty == 0:
        if add_qty == 0:
            raise ValueError("old_amount and add_amount are both 0: no position to average")
        return price
    entry = _positive(old_entry, "old_entry")
    return (old_qty * entry + add_qty * price) / (old_qty + add_qty)


# --------------------------------------------------------------------------- stops


def initial_stops(
    side: str,
    entry_price: Decimal,
    atr: Decimal | None,
    *,
    stop_loss_atr_multiple: Decimal,
    take_profit_atr_multiple: Decimal,
    tick_size: Decimal | None = None,
    fallback_stop_pct: Decimal = DEFAULT_FALLBACK_STOP_PCT,
    fallback_take_pct: Decimal = DEFAULT_FALLBACK_TAKE_PCT,
) -> tuple[Decimal, Decimal]:
    """(stop_loss, take_profit) for a new position.

    Long: entry - k_sl * ATR and entry + k_tp * ATR; short: the mirror. Without a usable ATR
    (None, zero or negative) the distances are fallback_stop_pct / fallback_take_pct percent of
    the entry. With `tick_size` the levels are rounded away from the entry (never closer than
    asked). No level is ever <= 0: a long's stop or a short's target beyond zero (huge ATR)
    floors at one tick (without a tick size, at MIN_LEVEL_FRACTION of the entry).
    """
    sign = _sign(side)
    entry = _positive(entry_price, "entry_price")
    k_sl = _positive(stop_loss_atr_multiple, "stop_loss_atr_multiple")
    k_tp = _positive(take_profit_atr_multiple, "take_profit_atr_multiple")
    tick = None if tick_size is None else _positive(tick_size, "tick_size")
    stop_pct = _positive(fallback_stop_pct, "fallback_stop_pct")
    take_pct = _positive(fallback_take_pct, "fallback_take_pct")
    atr_d = _optional_positive(atr, "atr")

    if atr_d is None:
        sl_dist = entry * stop_pct / HUNDRED
        tp_dist = entry * take_pct / HUNDRED
    else:
        sl_dist = k_sl * atr_d
        tp_dist = k_tp * atr_d
    floor = tick if tick is not None else entry * MIN_LEVEL_FRACTION
    if sign > 0:
        stop = _round(entry - sl_dist, tick, ROUND_FLOOR)
        take = _round(entry + tp_dist, tick, ROUND_CEILING)
    else:
        stop = _round(entry + sl_dist, tick, ROUND_CEILING)
        take = _round(entry - tp_dist, tick, ROUND_FLOOR)
    return max(stop, floor), max(take, floor)


@dataclass(frozen=True)
class TrailingState:
    """A position's exit levels between bars. `best_price`: the most favourable price seen
    since the entry (highest high for a long, lowest low for a short; starts at the entry)."""

    stop_loss: Decimal
    take_profit: Decimal | None
    best_price: Decimal
    break_even_done: bool


def update_trailing(
    state: TrailingState,
    *,
    side: str,
    entry_price: Decimal,
    high: Decimal,
    low: Decimal,
    atr: Decimal | None,
    trailing_atr_multiple: Decimal | None,
    break_even_trigger_pct: Decimal | None,
    fees_pct: Decimal = Decimal("0"),
    tick_size: Decimal | None = None,
) -> TrailingState:
    """The exit levels after a bar with `high` and `low` (see the module docstring for the order).

    - best_price moves to the bar's high (long) / low (short) when that is more favourable.
    - ATR trail: best - multiple * ATR (long), best + multiple * ATR (short); skipped when the
      ATR or the multiple is missing or not positive.
    - Break-even: once the favourable move from the entry to best_price reaches
      `break_even_trigger_pct` percent (None: never), the stop is at least at
      entry * (1 + fees_pct/100) for a long, entry * (1 - fees_pct/100) for a short, so the
      trade cannot turn into a loss after fees; break_even_done becomes (and stays) True.
    - The stop only ever moves in the favourable direction: the new stop is the tighter of the
      old one and the candidates, never a looser one. With `tick_size` the trail rounds away
      from the price (long down, short up) and the break-even level toward profit.
    - take_profit is carried over unchanged.
    """
    sign = _sign(side)
    entry = _positive(entry_price, "entry_price")
    hi = _positive(high, "high")
    lo = _positive(low, "low")
    if lo > hi:
        raise ValueError(f"low {lo} is above high {hi}")
    old_stop = _positive(state.stop_loss, "state.stop_loss")
    old_best = _positive(state.best_price, "state.best_price")
    fees = _non_negative(fees_pct, "fees_pct")
    tick = None if tick_size is None else _positive(tick_size, "tick_size")
    atr_d = _optional_positive(atr, "atr")
    mult = _optional_positive(trailing_atr_multiple, "trailing_atr_multiple")
    trigger = (
        None if break_even_trigger_pct is None else _non_negative(break_even_trigger_pct, "break_even_trigger_pct")
    )

    candidates: list[Decimal] = []
    if sign > 0:
        best = max(old_best, hi)
        if atr_d is not None and mult is not None:
            candidates.append(_round(best - mult * atr_d, tick, ROUND_FLOOR))
        move_pct = (best - entry) / entry * HUNDRED
        break_even = _round(entry * (1 + fees / HUNDRED), tick, ROUND_CEILING)
    else:
        best = min(old_best, lo)
        if atr_d is not None and mult is not None:
            candidates.append(_round(best + mult * atr_d, tick, ROUND_CEILING))
        move_pct = (entry - best) / entry * HUNDRED
        break_even = _round(entry * (1 - fees / HUNDRED), tick, ROUND_FLOOR)

    done = state.break_even_done or (trigger is not None and move_pct >= trigger)
    if done:
        candidates.append(break_even)
    candidates = [c for c in candidates if c > 0]
    stop = max([old_stop, *candidates]) if sign > 0 else min([old_stop, *candidates])
    return TrailingState(stop_loss=stop, take_profit=state.take_profit, best_price=best, break_even_done=done)


def exit_hit(
    *,
    side: str,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    stop_loss: Decimal,
    take_profit: Decimal | None,
    trailing: bool = False,
    open_: Decimal | None = None,
) -> tuple[str, Decimal] | None:
    """Whether the bar closed the position: (reason, exit price), or None.

    reason: "stop_loss" ("trailing_stop" when the caller says the stop is a trailed one,
    `trailing=True`) or "take_profit". A long's stop is hit when low <= stop, its target when
    high >= target; a short's stop when high >= stop, its target when low <= target.

    Exit prices: the level itself, except on gaps.
    - With `open_` beyond the stop (a long opening at or below it) the stop order fills at the
      open; with `open_` beyond the target, the target fills at the open (the better price).
    - Without `open_`, a bar lying entirely beyond the stop (it never traded at the stop) exits
      at `close`, the only other price of that bar known; a bar entirely beyond the target
      exits at the target (a limit fills at its price or better: the conservative assumption).

    Both hit inside the same bar: a bar does not say which came first, so the stop is assumed
    to have been hit first (the conservative, pessimistic choice), unless `open_` already lies
    beyond one of them (then that one was first).
    """
    sign = _sign(side)
    hi = _positive(high, "high")
    lo = _positive(low, "low")
    cl = _positive(close, "close")
    if lo > hi:
        raise ValueError(f"low {lo} is above high {hi}")
    if not lo <= cl <= hi:
        raise ValueError(f"close {cl} is outside the bar [{lo}, {hi}]")
    op = None if open_ is None else _positive(open_, "open_")
    if op is not None and not lo <= op <= hi:
        raise ValueError(f"open_ {op} is outside the bar [{lo}, {hi}]")
    stop = _positive(stop_loss, "stop_loss")
    take = None if take_profit is None else _positive(take_profit, "take_profit")
    stop_reason = "trailing_stop" if trailing else "stop_loss"

    def beyond_stop(price: Decimal) -> bool:  # at or past the stop, against the position
        return price <= stop if sign > 0 else price >= stop

    def beyond_take(price: Decimal) -> bool:  # at or past the target, in favour
        return take is not None and (price >= take if sign > 0 else price <= take)

    if op is not None:
        if beyond_stop(op):
            return stop_reason, op
        if beyond_take(op):
            return "take_profit", op

    adverse, favourable = (lo, hi) if sign > 0 else (hi, lo)
    if beyond_stop(adverse):
        never_traded_at_stop = beyond_stop(favourable) and favourable != stop
        return stop_reason, (cl if never_traded_at_stop else stop)
    if beyond_take(favourable):
        return "take_profit", take  # type: ignore[return-value]
    return None
