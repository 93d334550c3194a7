"""The pre-trade validator: one Snapshot in (policy, mode, account, the intent), one Verdict out.

Every rule is evaluated and every failure reported (an operator sees all reasons at once). Rule
names are stable strings used in alerts:

    mode, leverage, position_size, open_positions, daily_drawdown, total_exposure,
    sector_exposure, price_collar, order_rate, min_confidence, duplicate_intent,
    symbol_allowed, reduce_only, size, equity

An intent is an ENTRY unless it is reduce_only; buy is long, sell is short. An entry against an
existing opposite position is still an entry in its own direction (no netting: conservative).
Position notionals are taken by absolute value; only open orders that are not reduce_only count
as exposure ("open entry orders").

Size limits compare the intent's size with the room left under each cap, rounded down to the
cent, and `max_allowed_size_usd` is the smallest such room, so an intent sized at
max_allowed_size_usd passes the size rules and an approved entry never exceeds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

from core.decimals import to_decimal
from core.enums import Mode, PositionSide, Side
from risk.domain.policy import Policy

__all__ = ["BLOCKING_RULES", "RULES", "Exposure", "Intent", "OpenOrder", "Rejection", "Snapshot", "Verdict",
           "validate"]

RULES: tuple[str, ...] = (
    "mode", "leverage", "position_size", "open_positions", "daily_drawdown", "total_exposure", "sector_exposure",
    "price_collar", "order_rate", "min_confidence", "duplicate_intent", "symbol_allowed", "reduce_only", "size",
    "equity",
)
# A failure of any of these leaves no room at all (max_allowed_size_usd = 0).
BLOCKING_RULES: frozenset[str] = frozenset({
    "mode", "leverage", "open_positions", "daily_drawdown", "price_collar", "order_rate", "min_confidence",
    "duplicate_intent", "symbol_allowed", "equity",
})

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")
_SIDES = frozenset(Side)
_DIRECTIONS = frozenset(PositionSide)


def _dec(v: object, what: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise TypeError(f"{what} must be a Decimal, got {type(v).__name__}")
    return to_decimal(v, what)


@dataclass(frozen=True)
class Intent:
    symbol: str
    side: Side
    size_usd: Decimal
    leverage: int
    reduce_only: bool = False
    confidence: Decimal | None = None  # None: a manual order (min-confidence rule skipped)
    intent_key: str = ""
    sector: str = ""
    price: Decimal | None = None  # limit price or the price the signal saw; None: market, no expectation

    def __post_init__(self) -> None:
        if self.side not in _SIDES:
            raise ValueError(f"intent side must be one of {', '.join(Side)}, got {self.side!r}")
        if not isinstance(self.size_usd, Decimal):
            object.__setattr__(self, "size_usd", _dec(self.size_usd, "size_usd"))
        if self.confidence is not None and not isinstance(self.confidence, Decimal):
            object.__setattr__(self, "confidence", _dec(self.confidence, "confidence"))
        if self.price is not None and not isinstance(self.price, Decimal):
            object.__setattr__(self, "price", _dec(self.price, "price"))

    @property
    def direction(self) -> PositionSide:
        return Side(self.side).opens


@dataclass(frozen=True)
class Exposure:
    """An open position."""

    symbol: str
    side: PositionSide
    notional_usd: Decimal
    sector: str = ""

    def __post_init__(self) -> None:
        if self.side not in _DIRECTIONS:
            raise ValueError(f"position side must be one of {', '.join(PositionSide)}, got {self.side!r}")
        if not isinstance(self.notional_usd, Decimal):
            object.__setattr__(self, "notional_usd", _dec(self.notional_usd, "notional_usd"))


@dataclass(frozen=True)
class OpenOrder:
    """The unfilled remainder of an order on the exchange."""

    symbol: str
    side: Side
    notional_usd: Decimal
    reduce_only: bool
    sector: str = ""

    def __post_init__(self) -> None:
        if self.side not in _SIDES:
            raise ValueError(f"order side must be one of {', '.join(Side)}, got {self.side!r}")
        if not isinstance(self.notional_usd, Decimal):
            object.__setattr__(self, "notional_usd", _dec(self.notional_usd, "notional_usd"))


@dataclass(frozen=True)
class Snapshot:
    policy: Policy
    mode: str  # NORMAL | SHADOW | REDUCE_ONLY | HALTED
    equity_usd: Decimal
    day_start_equity_usd: Decimal
    positions: tuple[Exposure, ...]
    open_orders: tuple[OpenOrder, ...]
    intent: Intent
    reference_price: Decimal | None
    reference_price_age_seconds: float | None
    orders_last_minute: int
    recent_intent_keys: frozenset[str]
    entries_blocked_until: datetime | None = None
    now: datetime | None = None  # aware; the wall clock when None and an entry block is set

    def __post_init__(self) -> None:
        if not isinstance(self.equity_usd, Decimal):
            object.__setattr__(self, "equity_usd", _dec(self.equity_usd, "equity_usd"))
        if not isinstance(self.day_start_equity_usd, Decimal):
            object.__setattr__(self, "day_start_equity_usd", _dec(self.day_start_equity_usd, "day_start_equity_usd"))
        if self.reference_price is not None and not isinstance(self.reference_price, Decimal):
            object.__setattr__(self, "reference_price", _dec(self.reference_price, "reference_price"))


@dataclass(frozen=True)
class Rejection:
    rule: str
    message: str


@dataclass(frozen=True)
class Verdict:
    approved: bool
    reasons: tuple[Rejection, ...]
    max_allowed_size_usd: Decimal
    policy_version: int

    @property
    def reason(self) -> str:
        return "; ".join(r.message for r in self.reasons) if self.reasons else "approved"

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the failed rules, in RULES order."""
        return tuple(r.rule for r in self.reasons)


def _n(d: Decimal) -> str:
    """A policy number as written: 10000, 0.5."""
    return format(d, "f")


def _usd(d: Decimal) -> str:
    return f"{d:.2f}"


def _sector_name(sector: str) -> str:
    return f"sector {sector!r}" if sector else "sector (unassigned)"


def validate(snapshot: Snapshot) -> Verdict:
    """Evaluate every rule against the snapshot; see the module docstring for the semantics."""
    s = snapshot
    p = s.policy
    it = s.intent
    symbol = it.symbol
    side = it.side
    entry = not it.reduce_only
    direction = it.direction
    reduced_side = direction.opposite  # the position a reduce-only order shrinks
    size = it.size_usd
    equity = s.equity_usd
    day_start = s.day_start_equity_usd
    out: list[Rejection] = []
    blocked = False  # a BLOCKING_RULES failure

    size_ok = size.is_finite() and size > 0
    equity_ok = equity.is_finite() and equity > 0
    day_start_ok = day_start.is_finite() and day_start > 0

    # One pass over the book.
    sector = it.sector
    pos_same = ord_same = gross_pos = gross_ord = sector_total = opposite = _ZERO
    has_opposite = False
    open_symbols: set[str] = set()
    for e in s.positions:
        n = abs(e.notional_usd)
        sym = e.symbol
        open_symbols.add(sym)
        gross_pos += n
        if e.sector == sector:
            sector_total += n
        if sym == symbol:
            if e.side == direction:
                pos_same += n
            else:
                opposite += n
                has_opposite = True
    if entry:
        for o in s.open_orders:
            if o.reduce_only:
                continue
            n = abs(o.notional_usd)
            sym = o.symbol
            open_symbols.add(sym)
            gross_ord += n
            if o.sector == sector:
                sector_total += n
            if sym == symbol and o.side == side:
                ord_same += n

    # Rules in RULES order, so reasons come out in that order.
    # mode
    mode = s.mode
    if mode == Mode.HALTED:
        out.append(Rejection("mode", "mode HALTED rejects every order"))
        blocked = True
    elif mode == Mode.REDUCE_ONLY:
        if entry:
            out.append(Rejection("mode", "mode REDUCE_ONLY rejects entries (only reduce-only orders pass)"))
            blocked = True
    elif mode != Mode.NORMAL and mode != Mode.SHADOW:
        out.append(Rejection("mode", f"unknown mode {mode!r} rejects every order"))
        blocked = True

    # leverage
    lev = it.leverage
    max_lev = p.max_leverage
    if isinstance(lev, bool) or not isinstance(lev, int):
        out.append(Rejection("leverage", f"leverage {lev!r} must be a whole number from 1 to {max_lev}"))
        blocked = True
    elif lev < 1:
        out.append(Rejection("leverage", f"leverage {lev}x < 1x"))
        blocked = True
    elif lev > max_lev:
        out.append(Rejection("leverage", f"leverage {lev}x > max leverage {max_lev}x"))
        blocked = True

    pos_room = total_room = sector_room = _ZERO
    if entry:
        # position_size
        existing = pos_same + ord_same
        pos_room = (p.max_position_usd - existing).quantize(_CENT, ROUND_DOWN)
        if size_ok and size > pos_room:
            detail = ""
            if existing:
                detail = f" (position {_usd(pos_same)} + open orders {_usd(ord_same)} + {_usd(size)})"
            out.append(Rejection(
                "position_size",
                f"size {_usd(size)} USD would make {symbol} {direction} {_usd(existing + size)} USD{detail} "
                f"> max position {_n(p.max_position_usd)} USD (room {_usd(max(pos_room, _ZERO))} USD)"))

        # open_positions
        if symbol not in open_symbols and len(open_symbols) >= p.max_open_positions:
            out.append(Rejection(
                "open_positions",
                f"{symbol} would be a new symbol but {len(open_symbols)} symbols already have positions or "
                f"entry orders (max open positions {p.max_open_positions})"))
            blocked = True

        # daily_drawdown
        dd_msgs = []
        if day_start_ok and equity.is_finite():
            dd = (day_start - equity) / day_start * _HUNDRED
            if dd >= p.max_daily_drawdown_pct:
                dd_msgs.append(f"daily drawdown {dd:.2f}% (equity {_usd(equity)} USD vs day start "
                               f"{_usd(day_start)} USD) >= max daily drawdown {_n(p.max_daily_drawdown_pct)}%")
        until = s.entries_blocked_until
        if until is not None:
            now = s.now if s.now is not None else datetime.now(UTC)
            if now < until:
                dd_msgs.append(f"entries blocked until {until.isoformat()} (now {now.isoformat()})")
        if dd_msgs:
            out.append(Rejection("daily_drawdown", " and ".join(dd_msgs)))
            blocked = True

        if equity_ok:
            # total_exposure
            gross = gross_pos + gross_ord
            total_cap = p.max_total_exposure_pct * equity / _HUNDRED
            total_room = (total_cap - gross).quantize(_CENT, ROUND_DOWN)
            if size_ok and size > total_room:
                out.append(Rejection(
                    "total_exposure",
                    f"size {_usd(size)} USD would make gross exposure {_usd(gross + size)} USD (positions "
                    f"{_usd(gross_pos)} + open entry orders {_usd(gross_ord)} + {_usd(size)}) > "
                    f"{_n(p.max_total_exposure_pct)}% of equity {_usd(equity)} USD = {_usd(total_cap)} USD"))
            # sector_exposure
            cap_pct = p.sector_cap_pct(sector)
            sector_cap = cap_pct * equity / _HUNDRED
            sector_room = (sector_cap - sector_total).quantize(_CENT, ROUND_DOWN)
            if size_ok and size > sector_room:
                out.append(Rejection(
                    "sector_exposure",
                    f"size {_usd(size)} USD would make {_sector_name(sector)} exposure "
                    f"{_usd(sector_total + size)} USD > {_n(cap_pct)}% of equity {_usd(equity)} USD = "
                    f"{_usd(sector_cap)} USD"))

    # price_collar
    ref = s.reference_price
    age = s.reference_price_age_seconds
    max_age = p.reference_price_max_age_seconds
    collar_msg = None
    if ref is None:
        collar_msg = f"no reference price for {symbol}"
    elif not ref.is_finite() or ref <= 0:
        collar_msg = f"invalid reference price {ref} for {symbol}"
    elif age is None:
        collar_msg = f"reference price for {symbol} is stale (age unknown, max {max_age} s)"
    elif not age <= max_age:  # NaN counts as stale
        collar_msg = f"reference price for {symbol} is stale (age {age:.1f} s > max {max_age} s)"
    else:
        price = it.price
        if price is not None:
            if not price.is_finite() or price <= 0:
                collar_msg = f"invalid price {price} for {symbol}"
            elif abs(price - ref) * _HUNDRED > p.price_collar_pct * ref:
                dev = abs(price / ref - 1) * _HUNDRED
                collar_msg = (f"price {_n(price)} is {dev:.2f}% from reference {_n(ref)} for {symbol} "
                              f"> price collar {_n(p.price_collar_pct)}%")
    if collar_msg is not None:
        out.append(Rejection("price_collar", collar_msg))
        blocked = True

    # order_rate
    if s.orders_last_minute >= p.max_orders_per_minute:
        out.append(Rejection("order_rate", f"{s.orders_last_minute} orders in the last minute >= max "
                                           f"{p.max_orders_per_minute} per minute"))
        blocked = True

    # min_confidence
    conf = it.confidence
    if entry and conf is not None:
        if not conf.is_finite():
            out.append(Rejection("min_confidence", f"confidence {conf} is not a number"))
            blocked = True
        elif conf < p.min_confidence:
            out.append(Rejection("min_confidence", f"confidence {_n(conf)} < min confidence {_n(p.min_confidence)}"))
            blocked = True

    # duplicate_intent
    key = it.intent_key
    if key and key in s.recent_intent_keys:
        out.append(Rejection("duplicate_intent", f"intent key {key!r} was already handled (duplicate)"))
        blocked = True

    # symbol_allowed
    if entry:
        allow = p.symbol_allowlist
        if allow and symbol not in allow:
            listed = ", ".join(allow) if len(allow) <= 10 else f"{len(allow)} symbols"
            out.append(Rejection("symbol_allowed", f"{symbol} is not in the symbol allowlist ({listed})"))
            blocked = True
        elif symbol in p.symbol_denylist:
            out.append(Rejection("symbol_allowed", f"{symbol} is on the symbol denylist"))
            blocked = True

    # reduce_only
    if not entry:
        if not has_opposite:
            out.append(Rejection("reduce_only", f"reduce-only {side} on {symbol} needs a {reduced_side} position; "
                                                "there is none"))
        elif size_ok and size > opposite:
            out.append(Rejection("reduce_only", f"reduce-only size {_usd(size)} USD > {reduced_side} position "
                                                f"{_usd(opposite)} USD on {symbol}"))

    # size
    if not size_ok:
        out.append(Rejection("size", f"size {size} USD must be a positive finite amount"))

    # equity
    if entry:
        eq_msgs = []
        if not equity_ok:
            eq_msgs.append(f"equity {equity} USD must be positive to open positions")
        if not day_start_ok:
            eq_msgs.append(f"day start equity {day_start} USD must be positive to measure drawdown")
        if eq_msgs:
            out.append(Rejection("equity", " and ".join(eq_msgs)))
            blocked = True

    if blocked:
        max_allowed = _ZERO
    elif entry:
        max_allowed = min(pos_room, total_room, sector_room)
        if max_allowed < 0:
            max_allowed = _ZERO
    else:
        max_allowed = opposite
    return Verdict(not out, tuple(out), max_allowed, p.version)
