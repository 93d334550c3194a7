"""What new bars do to paper accounts: resting orders fill, positions liquidate, funding is paid.

Each affected account is processed in one transaction holding its lock (ledger.py), accounts
in ascending id order (two feeds never deadlock); the engine (engine.py) decides.

Called by the live feed (trading/marketdata/feed.py) after it stored new bars:

    on_new_bars(bars: Mapping[str, rows], *, timeframe: str,
                funding_rates: Mapping[str, rate | rows] | None = None,
                config: FillConfig | None = None) -> BarReport

`bars` maps unified symbol names of exchange "paper" to rows [open_time_ms, open, high,
low, close, volume] (oldest first; numpy arrays or lists); `funding_rates` maps a perpetual
to one rate for every funding time in these bars, or to rows [funding_time_ms, rate]
(the simulator's shape); missing perpetuals use config.default_funding_rate. Bars already
processed are skipped for orders and funding (re-delivery is harmless). A bar delivered
while still forming is matched once, with what it showed then: its later revisions do not
fill the same orders again.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from django.db import transaction

from trading.exchanges.errors import InsufficientFunds, InvalidOrder
from trading.exchanges.paper import engine
from trading.exchanges.paper import selectors as sel
from trading.exchanges.paper.engine import ZERO, Bar, FillConfig, fmt
from trading.exchanges.paper.ledger import Ledger, apply_fill, lock_account, new_id, release_reservation, utc_now
from trading.marketdata import timeframes
from trading.models import PaperFunding, PaperOrder, PaperOrderStatus, PaperPosition, PaperTrade, Symbol

PAPER = engine.EXCHANGE_ID
OPEN, CLOSED, CANCELED = PaperOrderStatus.OPEN, PaperOrderStatus.CLOSED, PaperOrderStatus.CANCELED
LIQUIDATION_CLIENT_PREFIX = "autoclose-"  # Binance names its liquidation orders this way


# --- new bars: resting orders, liquidations, funding -----------------------------------------


@dataclass
class BarReport:
    bars: int = 0
    fills: int = 0
    liquidations: int = 0
    funding_payments: int = 0
    canceled: int = 0
    accounts: int = 0


def _funding_lookup(value: object) -> Callable[[int], Decimal | None]:
    if value is None:
        return lambda _t: None
    if isinstance(value, Decimal | float | int | str):
        rate = engine.to_decimal(value, "funding rate")
        return lambda _t: rate
    table = {int(row[0]): engine.to_decimal(float(row[1]), "funding rate") for row in value}  # type: ignore[union-attr]
    return lambda t: table.get(t)


def on_new_bars(bars: Mapping[str, object], *, timeframe: str, funding_rates: Mapping[str, object] | None = None,
                config: FillConfig | None = None, now: datetime | None = None) -> BarReport:
    """What new bars do to paper accounts: see the module docstring."""
    config = config or sel.default_config()
    bar_ms = timeframes.milliseconds(timeframe)
    symbols = {s.symbol: s for s in Symbol.objects.filter(exchange=PAPER, symbol__in=list(bars))}
    parsed: dict[int, list[Bar]] = {}
    for name, rows in bars.items():
        if name in symbols and rows is not None and len(rows):
            parsed[symbols[name].pk] = sorted((Bar.from_row(r) for r in rows), key=lambda b: b.open_time_ms)
    report = BarReport(bars=sum(len(v) for v in parsed.values()))
    if not parsed:
        return report
    ids = list(parsed)
    account_ids = set(PaperOrder.objects.filter(symbol_id__in=ids, status=OPEN).values_list("account_id", flat=True))
    account_ids |= set(PaperPosition.objects.filter(symbol_id__in=ids, contracts__gt=0)
                       .values_list("account_id", flat=True))
    if not account_ids:
        return report
    by_id = {s.pk: s for s in symbols.values()}
    funding = {by_id[sid].pk: _funding_lookup((funding_rates or {}).get(by_id[sid].symbol)) for sid in ids}
    cond_cache: dict[int, engine.MarketConditions] = {}

    def cond_for(sym: Symbol, bar: Bar) -> engine.MarketConditions:
        if sym.pk not in cond_cache:
            try:
                cond_cache[sym.pk] = sel.conditions(sym, timeframe, config.volatility_window_bars)
            except Exception:  # no stored bars: judge from this bar alone
                cond_cache[sym.pk] = engine.conditions_from_bars(
                    [(bar.open_time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume)], bar_ms)
        return cond_cache[sym.pk]

    for account_id in sorted(account_ids):  # a fixed order: two feeds never deadlock on account locks
        report.accounts += 1
        _process_account(account_id, parsed, by_id, funding, cond_for, bar_ms, config, now or utc_now(), report)
    return report


def process_bar(symbol: Symbol | str, bar: Sequence | Bar, *, timeframe: str, funding_rate: object = None,
                config: FillConfig | None = None, now: datetime | None = None) -> BarReport:
    """One bar of one symbol: on_new_bars({symbol: [bar]}, ...)."""
    name = symbol.symbol if isinstance(symbol, Symbol) else symbol
    row = [bar.open_time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume] if isinstance(bar, Bar) else bar
    rates = {name: funding_rate} if funding_rate is not None else None
    return on_new_bars({name: [row]}, timeframe=timeframe, funding_rates=rates, config=config, now=now)


def _process_account(account_id: int, bars: dict[int, list[Bar]], symbols: dict[int, Symbol],
                     funding: dict[int, Callable[[int], Decimal | None]], cond_for, bar_ms: int, config: FillConfig,
                     now: datetime, report: BarReport) -> None:
    with transaction.atomic():
        lock_account(account_id)
        ledger = Ledger(account_id, now)
        orders_by_symbol: dict[int, list[PaperOrder]] = {}
        for o in PaperOrder.objects.filter(account_id=account_id, symbol_id__in=list(bars), status=OPEN).order_by(
                "created_at", "pk"):
            orders_by_symbol.setdefault(o.symbol_id, []).append(o)
        new_orders: list[PaperOrder] = []
        trades: list[PaperTrade] = []
        changed: dict[int, PaperOrder] = {}
        fundings: list[PaperFunding] = []
        for sid, sym_bars in bars.items():
            sym = symbols[sid]
            market = sel.market_spec(sym)
            orders = orders_by_symbol.get(sid, [])
            for bar in sym_bars:
                if market.is_perpetual:
                    liq = _liquidate_if_hit(ledger, sym, market, bar, bar_ms, config)
                    if liq is not None:
                        new_orders.append(liq.order)
                        trades.append(liq.trade)
                        report.liquidations += 1
                for o in orders:
                    if o.status != OPEN:
                        continue
                    if _match_order(ledger, o, sym, market, bar, bar_ms, cond_for, config, trades, report):
                        changed[o.pk] = o
                if market.is_perpetual:
                    fundings += _settle_funding(ledger, sym, market, bar, bar_ms, funding[sid], config, report)
        if new_orders:
            PaperOrder.objects.bulk_create(new_orders)
        for o in changed.values():
            o.save()
        if trades:
            PaperTrade.objects.bulk_create(trades)
        if fundings:
            PaperFunding.objects.bulk_create(fundings)
        ledger.flush()


def _match_order(ledger: Ledger, o: PaperOrder, sym: Symbol, market: engine.MarketSpec, bar: Bar, bar_ms: int,
                 cond_for, config: FillConfig, trades: list[PaperTrade], report: BarReport) -> bool:
    """Match one open order against one bar; True if the order row changed."""
    resting = engine.RestingOrder(side=o.side, type=o.type, remaining=o.remaining, price=o.price,
                                  arrival_ms=o.arrival_ms, arrived=o.arrived, last_bar_ms=o.last_bar_ms)
    match = engine.match_on_bar(resting, bar, bar_ms, cond_for(sym, bar), market, config)
    if match is None:
        return False
    o.arrived, o.last_bar_ms, o.updated_at = True, bar.open_time_ms, ledger.now
    amount = match.amount
    if o.reduce_only and amount > 0:
        pos = ledger.position(sym, config.default_leverage)
        closing = pos.is_open and pos.side == (engine.LONG if o.side == engine.SELL else engine.SHORT)
        amount = min(amount, pos.contracts) if closing else ZERO
        if amount == 0:
            _cancel(ledger, o, "reduce-only: no position left to reduce", report)
            return True
    if amount > 0:
        whole = match.cancel_rest or amount == o.remaining
        release = o.reserved if whole else (o.reserved * amount / o.remaining).quantize(engine.QUANTUM, ROUND_FLOOR)
        try:  # the engine raises before changing anything, so a refused fill leaves no trace
            trade = apply_fill(ledger, o, sym, market, amount, match.price, match.liquidity, release, config,
                          bar.open_time_ms)
        except (InsufficientFunds, InvalidOrder) as exc:
            _cancel(ledger, o, f"canceled at fill time: {exc}"[:200], report)
            return True
        o.reserved -= release
        trades.append(trade)
        report.fills += 1
    if o.remaining == 0:
        o.status = CLOSED
        release_reservation(ledger, o)
    elif match.cancel_rest:
        _cancel(ledger, o, f"immediate-or-cancel: {fmt(o.remaining)} unfilled beyond "
                           f"{fmt(config.participation_rate * 100)} % of the bar volume", report)
    return True


def _cancel(ledger: Ledger, o: PaperOrder, reason: str, report: BarReport) -> None:
    release_reservation(ledger, o)
    o.status, o.status_reason, o.updated_at = CANCELED, reason, ledger.now
    report.canceled += 1


@dataclass
class _Liquidated:
    order: PaperOrder
    trade: PaperTrade


def _liquidate_if_hit(ledger: Ledger, sym: Symbol, market: engine.MarketSpec, bar: Bar, bar_ms: int,
                      config: FillConfig) -> _Liquidated | None:
    row = ledger.position_row(sym, config.default_leverage)
    if row.opened_market_ms is not None and bar.open_time_ms + bar_ms <= row.opened_market_ms:
        return None  # the bar ended before the position existed (a re-delivered older bar)
    pos = ledger.position(sym, config.default_leverage)
    price = engine.liquidation_hit(pos, bar, config)
    if price is None:
        return None
    cur = market.margin_currency
    result = engine.liquidate(pos, price, ledger.wallet(cur))
    ledger.set_wallet(cur, result.wallet)
    ledger.set_position(sym, result.position, config, bar.open_time_ms)
    side = engine.SELL if pos.side == engine.LONG else engine.BUY
    cost = engine.q12(result.contracts * price)
    order = PaperOrder(
        account_id=ledger.account_id, symbol=sym, exchange_order_id=new_id(),
        client_order_id=f"{LIQUIDATION_CLIENT_PREFIX}{new_id()[:20]}", side=side, type=engine.MARKET,
        time_in_force="IOC", price=None, amount=result.contracts, filled=result.contracts, remaining=ZERO,
        average=price, cost=cost, status=CLOSED, reduce_only=True, leverage=pos.leverage, fee=result.fee,
        fee_currency=cur, arrival_ms=bar.open_time_ms, arrived=True, last_bar_ms=bar.open_time_ms,
        status_reason=f"liquidation: bar {'low' if pos.side == engine.LONG else 'high'} reached the liquidation "
                      f"price {fmt(price)}",
        created_at=ledger.now, updated_at=ledger.now, last_trade_at=ledger.now,
    )
    trade = PaperTrade(account_id=ledger.account_id, order=order, symbol=sym, trade_id=new_id(), side=side,
                       price=price, amount=result.contracts, cost=cost, fee=result.fee, fee_currency=cur,
                       taker_or_maker=engine.TAKER, realized_pnl=result.realized_pnl, timestamp=ledger.now,
                       market_time_ms=bar.open_time_ms)
    return _Liquidated(order, trade)


def _settle_funding(ledger: Ledger, sym: Symbol, market: engine.MarketSpec, bar: Bar, bar_ms: int,
                    rate_at: Callable[[int], Decimal | None], config: FillConfig, report: BarReport
                    ) -> list[PaperFunding]:
    out = []
    for t in engine.funding_times(bar.open_time_ms, bar.open_time_ms + bar_ms, config.funding_interval_ms):
        row = ledger.position_row(sym, config.default_leverage)
        if row.contracts <= 0 or row.opened_market_ms is None or row.opened_market_ms >= t:
            continue
        when = timeframes.to_datetime(t)
        if PaperFunding.objects.filter(account_id=ledger.account_id, symbol=sym, funding_time=when).exists():
            continue  # this funding time was settled already (bar delivered twice)
        rate = rate_at(t)
        rate = config.default_funding_rate if rate is None else rate
        pos = ledger.position(sym, config.default_leverage)
        cur = market.margin_currency
        result = engine.apply_funding(pos, ledger.wallet(cur), bar.close, rate)
        ledger.set_wallet(cur, result.wallet)
        ledger.set_position(sym, result.position, config, row.opened_market_ms)
        out.append(PaperFunding(account_id=ledger.account_id, symbol=sym, funding_time=when, side=pos.side,
                                contracts=pos.contracts, mark_price=bar.close, rate=rate, amount=result.amount,
                                currency=cur))
        report.funding_payments += 1
    return out
