"""Writes of the paper exchange: accounts, orders, leverage (what new bars do: bars.py).

Each runs in one transaction holding the account lock (ledger.py); the engine (engine.py)
decides, these functions validate, load, ask and store.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Sum

from trading.exchanges.errors import AuthenticationError, DuplicateClientOrderId, InvalidOrder, OrderNotFound
from trading.exchanges.paper import engine
from trading.exchanges.paper import selectors as sel
from trading.exchanges.paper.engine import ZERO, FillConfig, Match, fmt
from trading.exchanges.paper.ledger import Ledger, apply_fill, lock_account, new_id, release_reservation, utc_now
from trading.models import PaperAccount, PaperBalance, PaperOrder, PaperOrderStatus, PaperTrade, Symbol

PAPER = engine.EXCHANGE_ID
OPEN, CLOSED, CANCELED = PaperOrderStatus.OPEN, PaperOrderStatus.CLOSED, PaperOrderStatus.CANCELED
# Binance's clientOrderId rule (newClientOrderId): 1-36 of these characters.
CLIENT_ORDER_ID_PATTERN = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


# --- accounts --------------------------------------------------------------------------------


def create_account(name: str, initial_balances: Mapping[str, object] | None = None, *,
                   quote_currency: str = "USDT") -> PaperAccount:
    """A paper account with free balances, e.g. create_account("default", {"USDT": "10000"}).
    Raises ValueError if the name is taken or an amount is negative."""
    try:
        balances = {c: engine.to_decimal(v, f"initial balance of {c}") for c, v in (initial_balances or {}).items()}
    except InvalidOrder as exc:
        raise ValueError(str(exc)) from None
    bad = [c for c, v in balances.items() if v < 0]
    if bad:
        raise ValueError(f"negative initial balance for {', '.join(bad)}")
    try:
        with transaction.atomic():
            account = PaperAccount.objects.create(name=name, quote_currency=quote_currency)
            PaperBalance.objects.bulk_create(
                [PaperBalance(account=account, currency=c, free=engine.q12(v)) for c, v in balances.items()])
    except IntegrityError:
        raise ValueError(f"paper account {name!r} already exists") from None
    return account


def account_get(name: str) -> PaperAccount:
    try:
        return PaperAccount.objects.get(name=name)
    except PaperAccount.DoesNotExist:
        raise AuthenticationError(f"paper account {name!r} does not exist: create it with "
                                  "trading.exchanges.paper.create_account", exchange=PAPER) from None


# --- orders ----------------------------------------------------------------------------------


@dataclass
class OrderResult:
    order: PaperOrder
    trades: list[PaperTrade] = field(default_factory=list)


def _check_client_order_id(client_order_id: object) -> str | None:
    if client_order_id is None:
        return None
    cid = str(client_order_id)
    if not CLIENT_ORDER_ID_PATTERN.match(cid):
        raise InvalidOrder(f"clientOrderId {cid!r} must be 1-36 characters of A-Z a-z 0-9 . : / _ -",
                           exchange=PAPER)
    return cid


def order_create(*, account_id: int, symbol: Symbol, type: str, side: str, amount: object, price: object = None,
                 client_order_id: object = None, reduce_only: object = False, timeframe: str,
                 config: FillConfig, now: datetime | None = None) -> OrderResult:
    """Validate, then fill what fills now and rest the remainder, in one locked transaction.
    Every rejection raises (InvalidOrder, InsufficientFunds, DuplicateClientOrderId,
    BadSymbol, ExchangeNotAvailable when there is no price yet) before anything is written."""
    now = now or utc_now()
    market = sel.market_spec(symbol)
    req = engine.parse_order_request(market, type, side, amount, price, reduce_only)
    if not symbol.active:
        raise InvalidOrder(f"{symbol.symbol} is not active on {PAPER}", exchange=PAPER)
    cid = _check_client_order_id(client_order_id)
    cond = sel.conditions(symbol, timeframe, config.volatility_window_bars)
    engine.check_min_notional(market, req, cond.last_price)

    with transaction.atomic():
        ledger = Ledger(account_id, now)
        currencies = [market.margin_currency] if market.is_perpetual else [market.base, market.quote]
        if ledger.lock(currencies, cid, symbol if market.is_perpetual else None, config.default_leverage):
            raise DuplicateClientOrderId(f"clientOrderId {cid!r} is already used by an open order", exchange=PAPER)
        position = ledger.position(symbol, config.default_leverage) if market.is_perpetual else None
        if req.reduce_only:
            pending = PaperOrder.objects.filter(account_id=account_id, symbol=symbol, status=OPEN,
                                                reduce_only=True).aggregate(s=Sum("remaining"))["s"] or ZERO
            engine.check_reduce_only(market, req, position, pending)
        leverage = position.leverage if position is not None else 1
        order = PaperOrder(
            account_id=account_id, symbol=symbol, exchange_order_id=new_id(), client_order_id=cid or f"x-{new_id()}",
            side=req.side, type=req.type, time_in_force="IOC" if req.type == engine.MARKET else "GTC",
            price=req.price, amount=req.amount, remaining=req.amount, reduce_only=req.reduce_only,
            leverage=leverage, fee_currency=market.margin_currency, arrival_ms=cond.market_time_ms + config.latency_ms,
            arrived=config.latency_ms == 0, created_at=now, updated_at=now,
        )
        trades: list[PaperTrade] = []
        match = (engine.match_immediately(req, cond, market, config) if order.arrived
                 else Match(ZERO, req.price or cond.last_price, engine.TAKER))
        if match.amount > 0:
            trades.append(apply_fill(ledger, order, symbol, market, match.amount, match.price, match.liquidity, ZERO,
                                config, cond.market_time_ms))
        if order.remaining == 0:
            order.status = CLOSED
        elif match.cancel_rest:
            order.status = CANCELED
            order.status_reason = (f"immediate-or-cancel: {fmt(order.remaining)} unfilled beyond "
                                   f"{fmt(config.participation_rate * 100)} % of the mean bar volume")
        else:  # rests (limit) or waits for its first bar (latency): hold funds for the remainder
            hold_price = req.price if req.price is not None else cond.last_price * (1 + config.max_slippage)
            currency, amount_held = engine.reserve_for(
                market, req.side, order.remaining, hold_price, reduce_only=req.reduce_only, leverage=leverage,
                position=ledger.position(symbol, config.default_leverage) if market.is_perpetual else None,
                config=config)
            wallet = engine.hold(ledger.wallet(currency), amount_held,
                                 what=f"{req.side} {fmt(order.remaining)} {symbol.symbol} (open order)")
            ledger.set_wallet(currency, wallet)
            order.reserved, order.reserved_currency = amount_held, currency
        try:  # one statement on PostgreSQL; on failure the whole transaction rolls back
            ledger.flush(inserts=[order, *trades])
        except IntegrityError as exc:  # the partial unique index: only if the lock above were bypassed
            if "paper_order_client_id_unique_open" not in str(exc):
                raise
            raise DuplicateClientOrderId(f"clientOrderId {cid!r} is already used by an open order",
                                         exchange=PAPER) from None
    return OrderResult(order, trades)


def order_cancel(*, account_id: int, order_id: str | None = None, client_order_id: str | None = None,
                 symbol: Symbol | None = None, now: datetime | None = None) -> OrderResult:
    now = now or utc_now()
    with transaction.atomic():
        lock_account(account_id)
        order = order_find(account_id, order_id, client_order_id, symbol, open_only=True)
        if order.status != OPEN:
            raise OrderNotFound(f"order {order.exchange_order_id} is {order.status}, not open", exchange=PAPER)
        ledger = Ledger(account_id, now)
        release_reservation(ledger, order)
        order.status, order.status_reason, order.updated_at = CANCELED, "canceled by the user", now
        order.save(update_fields=["status", "status_reason", "reserved", "updated_at"])
        ledger.flush()
    return OrderResult(order, list(order.trades.all()))


def order_find(account_id: int, order_id: str | None, client_order_id: str | None, symbol: Symbol | None,
               open_only: bool = False) -> PaperOrder:
    """An order by exchange id, or by clientOrderId (the open one if any, else the latest);
    OrderNotFound naming what was asked for."""
    qs = PaperOrder.objects.filter(account_id=account_id).select_related("symbol")
    if symbol is not None:
        qs = qs.filter(symbol=symbol)
    if order_id is not None:
        qs = qs.filter(exchange_order_id=str(order_id))
    elif client_order_id is not None:
        qs = qs.filter(client_order_id=str(client_order_id))
        if open_only and qs.filter(status=OPEN).exists():
            qs = qs.filter(status=OPEN)
    else:
        raise InvalidOrder("an order id or a clientOrderId is needed", exchange=PAPER)
    order = qs.order_by("-created_at", "-pk").first()
    if order is None:
        which = f"id {order_id!r}" if order_id is not None else f"clientOrderId {client_order_id!r}"
        raise OrderNotFound(f"no paper order with {which}" + (f" on {symbol.symbol}" if symbol else ""),
                            exchange=PAPER)
    return order


def leverage_set(*, account_id: int, symbol: Symbol, leverage: object, config: FillConfig,
                 now: datetime | None = None) -> int:
    """Leverage for a perpetual's next position; refused while a position is open (the
    paper exchange does not re-margin open positions)."""
    now = now or utc_now()
    if not symbol.settle:
        raise InvalidOrder(f"leverage applies to perpetuals; {symbol.symbol} is spot", exchange=PAPER)
    lev = engine.check_leverage(leverage, config)
    with transaction.atomic():
        lock_account(account_id)
        ledger = Ledger(account_id, now)
        row = ledger.position_row(symbol, config.default_leverage)
        if row.contracts > 0 and row.leverage != lev:
            raise InvalidOrder(f"cannot change leverage of {symbol.symbol} from {row.leverage} to {lev} while a "
                               f"{row.side} position of {fmt(row.contracts)} is open", exchange=PAPER)
        row.leverage, row.updated_at = lev, now
        row.save()
    return lev
