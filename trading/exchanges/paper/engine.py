"""The paper exchange's fill model: pure functions over Decimals (no Django, no I/O).

The backend (backend.py) loads state from the database, asks this module what happens, and
writes the answer back in one transaction; the backtester can call the same functions.
Money and sizes are Decimal throughout; only market statistics (volatility, mean volume)
are estimated in floats and enter as Decimals rounded to 12 significant digits.

The model, in one place
=======================

Market state. Bars are [open_time_ms, open, high, low, close, volume]. The *last price* is
the close of the latest bar, observed at the bar's end (`market_time_ms`). The *volatility*
sigma is the standard deviation of per-bar log returns over the last
`volatility_window_bars` closes (Parkinson's high/low estimator when fewer than 3 bars
exist). The *available volume* V is the mean bar volume over the same window.

Fees. notional x rate, maker 0.02 % / taker 0.05 % by default (Binance USD-M VIP 0), charged
in the quote (settle) currency, rounded up to 1e-12. Never negative (rebates are not
modelled: the config refuses negative rates).

Slippage of a taker fill of size Q (square-root market impact, Almgren/Kyle style):

    half_spread = min_half_spread + spread_volatility_factor * sigma
    impact      = impact_coefficient * sigma * sqrt(Q / V)
    slippage    = min(max_slippage, half_spread + impact)

    buy fills at  ceil_to_tick(reference * (1 + slippage))
    sell fills at floor_to_tick(reference * (1 - slippage))

so it is non-decreasing in Q and in sigma (strictly increasing below the cap), and a tiny
order still pays the half spread. With V = 0 the impact is taken as the cap.

Partial fills. At most `participation_rate` (10 %) of a bar's volume fills per order per
bar, rounded down to the lot size. A *market* order is immediate-or-cancel: it fills up to
the cap against the mean bar volume V and the rest is cancelled (status "canceled" with
filled > 0, or with filled = 0 when the cap is below one lot). A *limit* order fills up to
the cap of each bar that crosses it and the rest stays open for later bars.

Limit orders. A resting buy fills when a bar's low <= limit (a sell when high >= limit), at
the limit price, as maker. Only bars that end after the order reached the book count; with
latency 0 an order arrives at the end of the latest bar, so the bars after it: bar data does
not say whether a low came before or after the order was placed, and this reading avoids
fills that could not have happened. A limit order that is marketable when it arrives (buy
limit >= best ask) takes liquidity at once: taker, at min(limit, slipped price); what the
cap leaves rests at the limit.

Holds. While an order is open its worst case is held (moved from free to used): a spot buy
holds amount x limit x (1 + taker fee), a spot sell the base amount, a perpetual order the
initial margin + taker fee of the part that would open exposure (reduce-only: nothing); a
latency-delayed market order is held at last x (1 + max_slippage). A fill releases its share.

Latency. latency_ms = 0 (default): an order arrives at the market time of the last price and
fills against it immediately. latency_ms > 0: the order arrives at market_time + latency;
it stays open (pending) until the bar that contains that moment arrives. That bar's open is
taken as the market price at arrival (a latency is far shorter than a bar; bar data knows
no finer price): a market order fills against it (with slippage, IOC); a limit order is
first checked for marketability against it, then rests.

Leverage and isolated margin (perpetuals, linear, contract size 1, one-way mode). Opening
Q at price P with leverage L locks initial margin Q*P/L in the position. Maintenance margin
follows Binance-like tiers by position notional N: MM = N * rate - maintenance_amount; each
tier also caps the leverage (a position too big for its leverage is refused). The
liquidation price is Binance's isolated formula with the position's margin M, entry E:

    long:  LP = (Q*E - M - amount) / (Q * (1 - rate))
    short: LP = (Q*E + M + amount) / (Q * (1 + rate))

(no liquidation price when it comes out <= 0, e.g. a 1x long). A position is liquidated when
a bar's low (long) or high (short) reaches LP; it is closed at LP and its whole isolated
margin is lost: the loss down to LP is realized PnL and what remains (about MM) is a
liquidation clearance fee, as on Binance. Prices are last prices: no separate mark series.

Funding (perpetuals). Every `funding_interval_ms` (8 h, at 00:00/08:00/16:00 UTC) a position
held before that moment pays contracts x mark x rate when long and rate > 0 (receives when
short; the signs swap when the rate is negative). The payment moves the position's isolated
margin (Binance isolated mode), so it moves the liquidation price too; a payment larger
than the margin empties it.

Order of events in one bar: liquidation first (the positions held as the bar opened), then
resting orders, then funding at the funding times the bar's end reaches.

Balances never go negative: every fill either fits the free balance or raises
InsufficientFunds before anything changes; a closing fill can lose at most the margin it
releases (isolated), and a fee that cannot be paid from what is left is waived.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from typing import NamedTuple

from core.decimals import round_to_step
from core.decimals import to_decimal as core_decimal
from core.enums import OrderType, PositionSide, Side
from trading.exchanges.errors import InsufficientFunds, InvalidOrder

EXCHANGE_ID = "paper"

ZERO = Decimal(0)
ONE = Decimal(1)
# Every price/amount/money column stores 12 decimals (trading.models.PRICE_DECIMALS).
QUANTUM = Decimal("1e-12")
# Quantizing needs headroom beyond the default 28 digits for large volumes.
_WIDE = Context(prec=60)

BUY, SELL = Side.BUY, Side.SELL
MARKET, LIMIT = OrderType.MARKET, OrderType.LIMIT
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
MAKER, TAKER = "maker", "taker"

EIGHT_HOURS_MS = 8 * 3600 * 1000

class Tier(NamedTuple):
    """A maintenance margin tier: positions with notional up to `cap` need MM = notional x
    `rate` - `amount`, and may use at most `max_leverage`."""

    cap: Decimal
    rate: Decimal
    amount: Decimal
    max_leverage: int


# Binance USD-M BTCUSDT-like tiers. The amount makes MM continuous across tiers
# (amount_i = amount_{i-1} + cap_{i-1} x (rate_i - rate_{i-1})); each tier's leverage cap keeps
# 1/leverage > rate, so a fresh position always has margin above maintenance.
DEFAULT_MAINTENANCE_TIERS: tuple[Tier, ...] = (
    Tier(Decimal("50000"), Decimal("0.004"), Decimal("0"), 125),
    Tier(Decimal("250000"), Decimal("0.005"), Decimal("50"), 100),
    Tier(Decimal("3000000"), Decimal("0.01"), Decimal("1300"), 50),
    Tier(Decimal("15000000"), Decimal("0.025"), Decimal("46300"), 20),
    Tier(Decimal("Infinity"), Decimal("0.05"), Decimal("421300"), 10),
)


@dataclass(frozen=True)
class FillConfig:
    """Knobs of the fill model; defaults are what the demo and the default backend use."""

    maker_fee_rate: Decimal = Decimal("0.0002")  # 0.02 %, Binance USD-M VIP 0
    taker_fee_rate: Decimal = Decimal("0.0005")  # 0.05 %
    # Share of a bar's volume one order may take: beyond ~10 % an order moves the market
    # more than the square-root law describes, so the rest waits (limit) or is cancelled.
    participation_rate: Decimal = Decimal("0.10")
    # Y in impact = Y * sigma * sqrt(Q/V); empirical estimates sit between 0.5 and 1.
    impact_coefficient: Decimal = Decimal("1.0")
    # Half of a 1 bp spread: liquid crypto pairs quote 0.1-2 bp, so even the smallest order pays.
    min_half_spread: Decimal = Decimal("0.00005")
    # The spread widens with volatility: with 5 % of per-bar sigma, a 5m sigma of 0.2 % adds 1 bp.
    spread_volatility_factor: Decimal = Decimal("0.05")
    # A market order never slips more than 3 % (exchanges' price protection bands are similar).
    max_slippage: Decimal = Decimal("0.03")
    latency_ms: int = 0
    # 48 bars of 5m = 4 hours: long enough for a stable sigma, short enough to follow regimes.
    volatility_window_bars: int = 48
    maintenance_tiers: tuple[Tier, ...] = DEFAULT_MAINTENANCE_TIERS
    default_leverage: int = 1  # a paper account starts unlevered; set_leverage raises it
    max_leverage: int = 125  # Binance's maximum on BTCUSDT
    funding_interval_ms: int = EIGHT_HOURS_MS
    # Used when the feed gives no rate: 0.01 % per 8 h, Binance's baseline (interest component).
    default_funding_rate: Decimal = Decimal("0.0001")

    def __post_init__(self) -> None:
        for name in ("maker_fee_rate", "taker_fee_rate", "participation_rate", "impact_coefficient",
                     "min_half_spread", "spread_volatility_factor", "max_slippage"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                object.__setattr__(self, name, value := core_decimal(value, f"FillConfig.{name}"))
            if value < 0:
                raise ValueError(f"FillConfig.{name} must be >= 0, got {value}")
        if not ZERO < self.participation_rate <= ONE:
            raise ValueError(f"FillConfig.participation_rate must be in (0, 1], got {self.participation_rate}")
        if self.latency_ms < 0:
            raise ValueError(f"FillConfig.latency_ms must be >= 0, got {self.latency_ms}")
        if not 1 <= self.default_leverage <= self.max_leverage:
            raise ValueError("FillConfig.default_leverage must be within 1..max_leverage")
        if any(t.max_leverage * t.rate >= 1 for t in self.maintenance_tiers):
            # with 1/L <= rate a position would be liquidated at its entry price
            raise ValueError("FillConfig.maintenance_tiers: a tier allows leverage >= 1 / its rate")


@dataclass(frozen=True)
class MarketSpec:
    """What the engine needs to know about a market (a Symbol row)."""

    symbol: str
    base: str
    quote: str
    settle: str = ""
    is_perpetual: bool = False
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("0.001")
    min_notional: Decimal = ZERO

    @property
    def margin_currency(self) -> str:
        """The currency fees, margin and PnL are paid in."""
        return self.settle or self.quote


@dataclass(frozen=True)
class Bar:
    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    @classmethod
    def from_row(cls, row: Sequence) -> Bar:
        """From [open_time_ms, open, high, low, close, volume] (floats, strings or Decimals)."""
        t, o, h, lo, c, v = row[:6]
        return cls(int(t), to_decimal(o), to_decimal(h), to_decimal(lo), to_decimal(c), to_decimal(v))


@dataclass(frozen=True)
class MarketConditions:
    last_price: Decimal
    volatility: Decimal  # std of per-bar log returns
    avg_bar_volume: Decimal  # V: mean bar volume over the window
    market_time_ms: int  # when last_price was observed: the end of the latest bar
    last_bar_volume: Decimal = ZERO


@dataclass(frozen=True)
class Wallet:
    free: Decimal = ZERO
    used: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.used


@dataclass(frozen=True)
class PositionState:
    side: str  # long / short (meaningless when contracts == 0)
    contracts: Decimal
    entry_price: Decimal
    leverage: int
    isolated_margin: Decimal
    realized_pnl: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.contracts > 0


def flat_position(leverage: int) -> PositionState:
    return PositionState(LONG, ZERO, ZERO, leverage, ZERO)


# --- numbers -----------------------------------------------------------------------------


def to_decimal(value: object, name: str = "value") -> Decimal:
    """core's conversion, refused as the exchange refuses a bad order (InvalidOrder)."""
    try:
        return core_decimal(value, name)
    except ValueError as exc:
        raise InvalidOrder(str(exc), exchange=EXCHANGE_ID) from None


def fmt(value: Decimal) -> str:
    """A Decimal for messages: plain notation, no trailing zeros (30000, not 3E+4 or 30000.000)."""
    return format(value.normalize(), "f")


def q12(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return value.quantize(QUANTUM, rounding=rounding, context=_WIDE)


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return round_to_step(value, step, ROUND_FLOOR)


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    return round_to_step(value, step, ROUND_CEILING)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def _stat(x: float) -> Decimal:
    return core_decimal(f"{x:.12g}") if math.isfinite(x) else ZERO


# --- market statistics -------------------------------------------------------------------


def conditions_from_bars(rows: Sequence[Sequence[float]], bar_ms: int, window: int = 48) -> MarketConditions | None:
    """Market conditions from bars oldest first (the selector's float rows). None if no bars."""
    n = len(rows)
    if n == 0:
        return None
    rows = rows[-window:] if n > window else rows
    closes = [float(r[4]) for r in rows]
    if len(closes) >= 3:
        logs = [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False) if a > 0 and b > 0]
        mean = sum(logs) / len(logs)
        sigma = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)) if len(logs) > 1 else 0.0
    else:  # Parkinson: sigma^2 = mean(ln(H/L)^2) / (4 ln 2)
        hl = [math.log(float(r[2]) / float(r[3])) ** 2 for r in rows if float(r[3]) > 0]
        sigma = math.sqrt(sum(hl) / len(hl) / (4 * math.log(2))) if hl else 0.0
    volumes = [float(r[5]) for r in rows]
    last = rows[-1]
    return MarketConditions(
        last_price=to_decimal(float(last[4])),
        volatility=_stat(sigma),
        avg_bar_volume=_stat(sum(volumes) / len(volumes)),
        market_time_ms=int(last[0]) + bar_ms,
        last_bar_volume=to_decimal(float(last[5])),
    )


# --- validation --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRequest:
    side: str
    type: str
    amount: Decimal
    price: Decimal | None = None
    reduce_only: bool = False


def parse_order_request(market: MarketSpec, type: str, side: str, amount: object, price: object,
                        reduce_only: object = False) -> OrderRequest:
    """Shape checks that need no market data; raises InvalidOrder with the reason."""
    if type not in (MARKET, LIMIT):
        raise InvalidOrder(f"order type {type!r} is not supported (market, limit)", exchange=EXCHANGE_ID)
    if side not in (BUY, SELL):
        raise InvalidOrder(f"order side {side!r} is not buy or sell", exchange=EXCHANGE_ID)
    qty = to_decimal(amount, "amount")
    if qty <= 0:
        raise InvalidOrder(f"amount {fmt(qty)} must be > 0", exchange=EXCHANGE_ID)
    if not is_multiple(qty, market.lot_size):
        raise InvalidOrder(f"amount {fmt(qty)} of {market.symbol} is not a multiple of the lot size "
                           f"{fmt(market.lot_size)}", exchange=EXCHANGE_ID)
    limit_price = None
    if type == LIMIT:
        if price is None:
            raise InvalidOrder(f"a limit order on {market.symbol} needs a price", exchange=EXCHANGE_ID)
        limit_price = to_decimal(price, "price")
        if limit_price <= 0:
            raise InvalidOrder(f"price {fmt(limit_price)} must be > 0", exchange=EXCHANGE_ID)
        if not is_multiple(limit_price, market.tick_size):
            raise InvalidOrder(f"price {fmt(limit_price)} of {market.symbol} is not a multiple of the tick size "
                               f"{fmt(market.tick_size)}", exchange=EXCHANGE_ID)
    if reduce_only not in (True, False, None, "true", "false"):
        raise InvalidOrder(f"reduceOnly must be a boolean, got {reduce_only!r}", exchange=EXCHANGE_ID)
    ro = reduce_only in (True, "true")
    if ro and not market.is_perpetual:
        raise InvalidOrder(f"reduceOnly applies to perpetuals; {market.symbol} is spot", exchange=EXCHANGE_ID)
    return OrderRequest(side=side, type=type, amount=qty, price=limit_price, reduce_only=ro)


def check_min_notional(market: MarketSpec, req: OrderRequest, reference_price: Decimal) -> None:
    """notional = amount x (limit price, or the last price for a market order) >= min_notional.
    Reduce-only orders are exempt, as on Binance futures: closing must always be possible."""
    if req.reduce_only:
        return
    notional = req.amount * (req.price if req.price is not None else reference_price)
    if notional < market.min_notional:
        raise InvalidOrder(f"notional {fmt(q12(notional))} of {market.symbol} is below the minimum "
                           f"{fmt(market.min_notional)} ({fmt(req.amount)} x "
                           f"{fmt(req.price or reference_price)})", exchange=EXCHANGE_ID)


def check_reduce_only(market: MarketSpec, req: OrderRequest, position: PositionState | None,
                      pending_reduce: Decimal = ZERO) -> None:
    """A reduce-only order must face an open position on the other side and not exceed it
    (with the other open reduce-only orders)."""
    if not req.reduce_only:
        return
    closing_side = SELL if position is not None and position.side == LONG else BUY
    if position is None or not position.is_open or req.side != closing_side:
        held = f"{position.side} {fmt(position.contracts)}" if position and position.is_open else "no position"
        raise InvalidOrder(f"reduceOnly {req.side} {fmt(req.amount)} on {market.symbol} would increase the position "
                           f"({held})", exchange=EXCHANGE_ID)
    if req.amount + pending_reduce > position.contracts:
        raise InvalidOrder(f"reduceOnly {req.side} {fmt(req.amount)} on {market.symbol} exceeds the {position.side} "
                           f"position of {fmt(position.contracts)} (other reduce-only orders: "
                           f"{fmt(pending_reduce)})", exchange=EXCHANGE_ID)


def check_leverage(leverage: object, config: FillConfig) -> int:
    try:
        d = core_decimal(leverage, "leverage")
    except ValueError:
        d = None
    if d is None or d != d.to_integral_value():
        raise InvalidOrder(f"leverage {leverage!r} is not a whole number", exchange=EXCHANGE_ID)
    lev = int(d)
    if not 1 <= lev <= config.max_leverage:
        raise InvalidOrder(f"leverage {lev} outside 1..{config.max_leverage}", exchange=EXCHANGE_ID)
    return lev


# --- fees, slippage, fill sizes ------------------------------------------------------------


def fee_for(notional: Decimal, liquidity: str, config: FillConfig) -> Decimal:
    rate = config.maker_fee_rate if liquidity == MAKER else config.taker_fee_rate
    return q12(abs(notional) * rate, ROUND_CEILING)


def half_spread(volatility: Decimal, config: FillConfig) -> Decimal:
    return config.min_half_spread + config.spread_volatility_factor * volatility


def slippage_fraction(amount: Decimal, volatility: Decimal, avg_bar_volume: Decimal, config: FillConfig) -> Decimal:
    """min(max_slippage, half_spread + Y * sigma * sqrt(Q / V)) — see the module docstring."""
    if avg_bar_volume <= 0:
        return config.max_slippage
    impact = config.impact_coefficient * volatility * (amount / avg_bar_volume).sqrt()
    return min(config.max_slippage, half_spread(volatility, config) + impact)


def taker_price(side: str, reference: Decimal, amount: Decimal, volatility: Decimal, avg_bar_volume: Decimal,
                market: MarketSpec, config: FillConfig) -> Decimal:
    """The price a taker fill of `amount` gets against `reference`, rounded against the taker."""
    slip = slippage_fraction(amount, volatility, avg_bar_volume, config)
    if side == BUY:
        return ceil_to_step(reference * (ONE + slip), market.tick_size)
    return max(floor_to_step(reference * (ONE - slip), market.tick_size), market.tick_size)


def best_bid_ask(reference: Decimal, volatility: Decimal, market: MarketSpec, config: FillConfig
                 ) -> tuple[Decimal, Decimal]:
    hs = half_spread(volatility, config)
    bid = max(floor_to_step(reference * (ONE - hs), market.tick_size), market.tick_size)
    ask = ceil_to_step(reference * (ONE + hs), market.tick_size)
    if ask <= bid:
        ask = bid + market.tick_size
    return bid, ask


def participation_cap(bar_volume: Decimal, market: MarketSpec, config: FillConfig) -> Decimal:
    """The most one order may fill against one bar: participation_rate x volume, in whole lots."""
    if bar_volume <= 0:
        return ZERO
    return floor_to_step(bar_volume * config.participation_rate, market.lot_size)


def limit_crosses(side: str, limit_price: Decimal, bar: Bar) -> bool:
    """A resting buy fills when the bar's low reaches it, a sell when the high does."""
    return bar.low <= limit_price if side == BUY else bar.high >= limit_price


def limit_marketable(side: str, limit_price: Decimal, best_bid: Decimal, best_ask: Decimal) -> bool:
    return limit_price >= best_ask if side == BUY else limit_price <= best_bid


@dataclass(frozen=True)
class Match:
    """What one order gets: `amount` at `price` (amount 0 = nothing this time);
    `cancel_rest`: the unfilled remainder is cancelled (immediate-or-cancel)."""

    amount: Decimal
    price: Decimal
    liquidity: str
    cancel_rest: bool = False


@dataclass(frozen=True)
class RestingOrder:
    side: str
    type: str
    remaining: Decimal
    price: Decimal | None
    arrival_ms: int  # market time at which the order reached the book
    arrived: bool  # False while a latency-delayed order waits for its first bar
    last_bar_ms: int | None = None  # the last bar already matched (idempotent re-delivery)


def match_immediately(req: OrderRequest, cond: MarketConditions, market: MarketSpec, config: FillConfig) -> Match:
    """An order arriving now (latency 0), against the last price and the mean bar volume."""
    cap = min(req.amount, participation_cap(cond.avg_bar_volume, market, config))
    if req.type == MARKET:
        price = taker_price(req.side, cond.last_price, max(cap, market.lot_size), cond.volatility,
                            cond.avg_bar_volume, market, config)
        return Match(cap, price, TAKER, cancel_rest=True)
    bid, ask = best_bid_ask(cond.last_price, cond.volatility, market, config)
    if not limit_marketable(req.side, req.price, bid, ask):
        return Match(ZERO, req.price, MAKER)
    return Match(cap, _capped_taker(req.side, req.price, cond.last_price, cap, cond, market, config), TAKER)


def _capped_taker(side: str, limit: Decimal, reference: Decimal, amount: Decimal, cond: MarketConditions,
                  market: MarketSpec, config: FillConfig) -> Decimal:
    price = taker_price(side, reference, max(amount, market.lot_size), cond.volatility, cond.avg_bar_volume,
                        market, config)
    return min(price, limit) if side == BUY else max(price, limit)


def match_on_bar(order: RestingOrder, bar: Bar, bar_ms: int, cond: MarketConditions, market: MarketSpec,
                 config: FillConfig) -> Match | None:
    """What an open order gets from a new bar lasting `bar_ms`; None when the bar does not
    concern it (it ended before the order reached the book, or was matched already)."""
    if bar.open_time_ms + bar_ms <= order.arrival_ms:
        return None
    if order.last_bar_ms is not None and bar.open_time_ms <= order.last_bar_ms:
        return None
    cap = min(order.remaining, participation_cap(bar.volume, market, config))
    if order.type == MARKET:  # a latency-delayed market order: the bar's open is the price at arrival
        price = taker_price(order.side, bar.open, max(cap, market.lot_size), cond.volatility, cond.avg_bar_volume,
                            market, config)
        return Match(cap, price, TAKER, cancel_rest=True)
    limit = order.price
    if not order.arrived and limit_marketable(order.side, limit, bar.open, bar.open):
        return Match(cap, _capped_taker(order.side, limit, bar.open, cap, cond, market, config), TAKER)
    if limit_crosses(order.side, limit, bar):
        return Match(cap, limit, MAKER)
    return Match(ZERO, limit, MAKER)


# --- reservations for open orders ----------------------------------------------------------


def opening_amount(side: str, amount: Decimal, position: PositionState | None) -> Decimal:
    """The part of a perpetual order that opens or increases exposure (the rest closes)."""
    if position is None or not position.is_open or _position_side(side) == position.side:
        return amount
    return max(ZERO, amount - position.contracts)


def reserve_for(market: MarketSpec, side: str, amount: Decimal, price: Decimal, *, reduce_only: bool,
                leverage: int, position: PositionState | None, config: FillConfig) -> tuple[str, Decimal]:
    """(currency, amount) to move from free to used while `amount` waits at `price`: spot
    buys hold cost + taker fee in quote, spot sells hold the base; perpetuals hold the
    initial margin and taker fee of the part that would open exposure."""
    if not market.is_perpetual:
        if side == BUY:
            return market.quote, q12(amount * price * (ONE + config.taker_fee_rate), ROUND_CEILING)
        return market.base, amount
    if reduce_only:
        return market.margin_currency, ZERO
    opening = opening_amount(side, amount, position)
    lev = position.leverage if position is not None and position.is_open else leverage
    notional = opening * price
    return market.margin_currency, q12(notional / lev, ROUND_CEILING) + fee_for(notional, TAKER, config)


# --- accounting ------------------------------------------------------------------------------


def _release(wallet: Wallet, amount: Decimal) -> Wallet:
    amount = min(amount, wallet.used)
    return Wallet(free=wallet.free + amount, used=wallet.used - amount)


def hold(wallet: Wallet, amount: Decimal, *, what: str) -> Wallet:
    """Move `amount` from free to used, or raise InsufficientFunds naming what it was for."""
    if amount > wallet.free:
        raise InsufficientFunds(f"{what} needs {fmt(q12(amount))}, free balance is "
                                f"{fmt(wallet.free)}", exchange=EXCHANGE_ID)
    return Wallet(free=wallet.free - amount, used=wallet.used + amount)


@dataclass(frozen=True)
class SpotFill:
    base: Wallet
    quote: Wallet
    cost: Decimal
    fee: Decimal


def apply_spot_fill(market: MarketSpec, side: str, amount: Decimal, price: Decimal, liquidity: str, *,
                    base: Wallet, quote: Wallet, release: Decimal = ZERO, config: FillConfig) -> SpotFill:
    """Exchange base for quote. `release`: what this fill frees from the order's reservation
    (quote for a buy, base for a sell). Raises InsufficientFunds before changing anything."""
    cost = q12(amount * price)
    fee = fee_for(cost, liquidity, config)
    if side == BUY:
        quote = _release(quote, release)
        if cost + fee > quote.free:
            raise InsufficientFunds(f"buy {fmt(amount)} {market.symbol} at {fmt(price)} needs "
                                    f"{fmt(cost + fee)} {market.quote} (cost + fee), free is "
                                    f"{fmt(quote.free)}", exchange=EXCHANGE_ID)
        return SpotFill(base=replace(base, free=base.free + amount),
                        quote=replace(quote, free=quote.free - cost - fee), cost=cost, fee=fee)
    base = _release(base, release)
    if amount > base.free:
        raise InsufficientFunds(f"sell {fmt(amount)} {market.symbol} needs {fmt(amount)} "
                                f"{market.base}, free is {fmt(base.free)}", exchange=EXCHANGE_ID)
    return SpotFill(base=replace(base, free=base.free - amount),
                    quote=replace(quote, free=quote.free + cost - fee), cost=cost, fee=fee)


def _position_side(order_side: str) -> str:
    return LONG if order_side == BUY else SHORT


@dataclass(frozen=True)
class PerpFill:
    wallet: Wallet
    position: PositionState
    cost: Decimal
    fee: Decimal
    realized_pnl: Decimal
    closed: Decimal
    opened: Decimal


def apply_perp_fill(market: MarketSpec, side: str, amount: Decimal, price: Decimal, liquidity: str, *,
                    wallet: Wallet, position: PositionState, reduce_only: bool = False, release: Decimal = ZERO,
                    config: FillConfig) -> PerpFill:
    """A fill on a linear perpetual in one-way mode with isolated margin: first closes what
    it can of an opposite position (realizing PnL, releasing margin pro rata; the loss is
    bounded by the released margin), then opens the rest at the position's leverage."""
    wallet = _release(wallet, release)
    cost = q12(amount * price)
    fee = fee_for(cost, liquidity, config)
    pos = position
    closed = ZERO if not pos.is_open or pos.side == _position_side(side) else min(amount, pos.contracts)
    opened = amount - closed
    if reduce_only and opened > 0:
        raise InvalidOrder(f"reduceOnly {side} {fmt(amount)} on {market.symbol} exceeds the position "
                           f"({fmt(pos.contracts)})", exchange=EXCHANGE_ID)
    realized = ZERO
    if closed > 0:
        released = pos.isolated_margin if closed == pos.contracts else q12(pos.isolated_margin * closed / pos.contracts)
        sign = ONE if pos.side == LONG else -ONE
        pnl = max(q12((price - pos.entry_price) * closed * sign), -released)
        realized = pnl
        wallet = Wallet(free=wallet.free + released + pnl, used=wallet.used - released)
        remaining = pos.contracts - closed
        pos = replace(pos, contracts=remaining, isolated_margin=pos.isolated_margin - released,
                      realized_pnl=pos.realized_pnl + pnl)
        if remaining == 0:
            pos = replace(pos, entry_price=ZERO, isolated_margin=ZERO)
    if opened > 0:
        lev = pos.leverage
        check_position_leverage(market, (pos.contracts + opened) * price, lev, config.maintenance_tiers)
        margin = q12(opened * price / lev, ROUND_CEILING)
        if margin + fee > wallet.free:
            raise InsufficientFunds(f"{side} {fmt(opened)} {market.symbol} at {fmt(price)} x{lev} "
                                    f"needs {fmt(margin + fee)} {market.margin_currency} (margin + fee), "
                                    f"free is {fmt(wallet.free)}", exchange=EXCHANGE_ID)
        wallet = Wallet(free=wallet.free - margin - fee, used=wallet.used + margin)
        if pos.is_open:  # same side: average the entry
            total = pos.contracts + opened
            entry = q12((pos.entry_price * pos.contracts + price * opened) / total)
            pos = replace(pos, contracts=total, entry_price=entry, isolated_margin=pos.isolated_margin + margin)
        else:
            pos = replace(pos, side=_position_side(side), contracts=opened, entry_price=price, isolated_margin=margin)
    else:
        # a pure close: the fee comes out of what the close returned; what cannot be paid is waived
        fee = min(fee, wallet.free)
        wallet = replace(wallet, free=wallet.free - fee)
    return PerpFill(wallet=wallet, position=pos, cost=cost, fee=fee, realized_pnl=realized, closed=closed,
                    opened=opened)


# --- margin, liquidation, funding -------------------------------------------------------------


def maintenance_tier(notional: Decimal, tiers: Sequence[Tier] = DEFAULT_MAINTENANCE_TIERS
                     ) -> tuple[Decimal, Decimal]:
    """(maintenance margin rate, maintenance amount) of the tier holding `notional`."""
    return tier_for(notional, tiers)[1:3]


def tier_for(notional: Decimal, tiers: Sequence[Tier] = DEFAULT_MAINTENANCE_TIERS) -> Tier:
    for tier in tiers:
        if notional <= tier.cap:
            return tier
    return tiers[-1]


def check_position_leverage(market: MarketSpec, notional: Decimal, leverage: int, tiers: Sequence[Tier]) -> None:
    """Binance's "maximum allowable position at current leverage": a bigger position needs a
    lower leverage (each tier caps it)."""
    tier = tier_for(notional, tiers)
    if leverage > tier.max_leverage:
        allowed = max((t.cap for t in tiers if t.max_leverage >= leverage), default=ZERO)
        raise InvalidOrder(f"a {market.symbol} position of notional {fmt(q12(notional))} allows at most "
                           f"{tier.max_leverage}x; at {leverage}x the maximum notional is {fmt(allowed)}",
                           exchange=EXCHANGE_ID)


def maintenance_margin(contracts: Decimal, price: Decimal,
                       tiers: Sequence[Tier] = DEFAULT_MAINTENANCE_TIERS) -> Decimal:
    notional = contracts * price
    rate, amount = maintenance_tier(notional, tiers)
    return q12(notional * rate - amount)


def liquidation_price(side: str, contracts: Decimal, entry_price: Decimal, isolated_margin: Decimal,
                      tiers: Sequence[Tier] = DEFAULT_MAINTENANCE_TIERS
                      ) -> Decimal | None:
    """Binance's isolated-margin liquidation price (see the module docstring); None if the
    position cannot be liquidated (the formula gives a price <= 0) or is flat."""
    if contracts <= 0:
        return None
    rate, amount = maintenance_tier(contracts * entry_price, tiers)
    if side == LONG:
        lp = (contracts * entry_price - isolated_margin - amount) / (contracts * (ONE - rate))
    else:
        lp = (contracts * entry_price + isolated_margin + amount) / (contracts * (ONE + rate))
    lp = q12(lp)
    return lp if lp > 0 else None


def liquidation_hit(position: PositionState, bar: Bar, config: FillConfig) -> Decimal | None:
    """The liquidation price if this bar reaches it, else None."""
    if not position.is_open:
        return None
    lp = liquidation_price(position.side, position.contracts, position.entry_price, position.isolated_margin,
                           config.maintenance_tiers)
    if lp is None:
        return None
    if (position.side == LONG and bar.low <= lp) or (position.side == SHORT and bar.high >= lp):
        return lp
    return None


@dataclass(frozen=True)
class Liquidation:
    wallet: Wallet
    position: PositionState
    price: Decimal
    contracts: Decimal
    realized_pnl: Decimal  # the loss down to the liquidation price
    fee: Decimal  # the rest of the margin: liquidation clearance fee


def liquidate(position: PositionState, price: Decimal, wallet: Wallet) -> Liquidation:
    """Close the whole position at `price`; its isolated margin is lost (PnL down to the
    liquidation price + clearance fee = margin). Nothing outside the position is touched."""
    sign = ONE if position.side == LONG else -ONE
    margin = position.isolated_margin
    pnl = max(q12((price - position.entry_price) * position.contracts * sign), -margin)
    fee = margin + pnl  # >= 0: what is left of the margin at the liquidation price
    wallet = Wallet(free=wallet.free, used=max(wallet.used - margin, ZERO))
    flat = replace(position, contracts=ZERO, entry_price=ZERO, isolated_margin=ZERO,
                   realized_pnl=position.realized_pnl + pnl)
    return Liquidation(wallet=wallet, position=flat, price=price, contracts=position.contracts, realized_pnl=pnl,
                       fee=fee)


def funding_payment(side: str, contracts: Decimal, mark_price: Decimal, rate: Decimal) -> Decimal:
    """Signed amount the holder receives (negative: pays). Longs pay shorts when rate > 0."""
    amount = q12(contracts * mark_price * rate)
    return -amount if side == LONG else amount


def funding_times(start_ms: int, end_ms: int, interval_ms: int = EIGHT_HOURS_MS) -> list[int]:
    """Funding timestamps t with start_ms < t <= end_ms (multiples of the interval since epoch)."""
    first = (start_ms // interval_ms + 1) * interval_ms
    return list(range(first, end_ms + 1, interval_ms))


@dataclass(frozen=True)
class FundingResult:
    wallet: Wallet
    position: PositionState
    amount: Decimal  # what actually moved (signed, bounded by the margin when paying)


def apply_funding(position: PositionState, wallet: Wallet, mark_price: Decimal, rate: Decimal) -> FundingResult:
    """Settle one funding payment against the position's isolated margin (and `used`)."""
    amount = funding_payment(position.side, position.contracts, mark_price, rate)
    amount = max(amount, -position.isolated_margin)
    pos = replace(position, isolated_margin=position.isolated_margin + amount)
    return FundingResult(wallet=Wallet(free=wallet.free, used=wallet.used + amount), position=pos, amount=amount)


# --- synthetic order book ----------------------------------------------------------------------


@dataclass(frozen=True)
class Book:
    bids: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    asks: list[tuple[Decimal, Decimal]] = field(default_factory=list)


# Each synthesized level holds 1 % of a mean bar's volume: 20 levels show the depth up to twice
# the participation cap.
BOOK_LEVEL_VOLUME_FRACTION = Decimal("0.01")


def synthesize_book(cond: MarketConditions, market: MarketSpec, config: FillConfig, levels: int = 20) -> Book:
    """An order book consistent with the fill model: level i (from 0) sits at the price the
    fill model gives a taker order of size i x step (half spread + square-root impact), so the
    top of the book is the best bid/ask and deeper levels are as far as the impact curve
    says. Each level holds `step` (1 % of the mean bar volume, at least one lot); levels that
    round to the same tick are merged."""
    step = max(floor_to_step(cond.avg_bar_volume * BOOK_LEVEL_VOLUME_FRACTION, market.lot_size), market.lot_size)
    asks: dict[Decimal, Decimal] = {}
    bids: dict[Decimal, Decimal] = {}
    best_bid, best_ask = best_bid_ask(cond.last_price, cond.volatility, market, config)
    for i in range(levels):
        depth = step * i
        ask = max(taker_price(BUY, cond.last_price, depth, cond.volatility, cond.avg_bar_volume, market, config),
                  best_ask)
        bid = min(taker_price(SELL, cond.last_price, depth, cond.volatility, cond.avg_bar_volume, market, config),
                  best_bid)
        asks[ask] = asks.get(ask, ZERO) + step
        bids[bid] = bids.get(bid, ZERO) + step
    return Book(bids=sorted(bids.items(), key=lambda x: -x[0]), asks=sorted(asks.items()))
