"""Intents: create one, validate and start it, advance it to DONE | STOPPED | FAILED.

intent_create   one ExecutionIntent per deterministic key (a duplicate delivery finds it)
intent_process  PENDING -> preflight and risk validation -> REJECTED | SHADOW | WORKING
intent_advance  WORKING -> place the slices that are due, limit timeouts, slippage cap, mode
                checks -> DONE | STOPPED | FAILED

Nothing here holds a database transaction across an exchange call: the exchange is another
system, and a crash must leave our rows in a state reconciliation can complete.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.decimals import ZERO, to_decimal, to_decimal_or_none
from core.enums import (
    ExecutionStatus,
    ExecutionStrategy,
    IntentSource,
    IntentStatus,
    MarketType,
    Mode,
    OrderStatus,
    OrderType,
    Severity,
    Side,
)
from core.limits import NAME_MAX, SHORT_TEXT_MAX, TEXT_MAX, USER_MAX
from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.health.status import redis_client
from qtweb.logging import get_logger
from qtweb.queues import Service, service_shadow
from qtweb.tracing import current_trace_id
from trading.exchanges import errors
from trading.exchanges.account import exchange_id, execution_gateway
from trading.execution import orders as order_svc
from trading.execution import planning
from trading.marketdata.reference import reference_price
from trading.models import ExecutionIntent, Order, Position, Symbol

log = get_logger(__name__)

CENT = Decimal("0.01")
SLIPPAGE_QUANTUM = Decimal("0.000001")
INTENT_LOCK_SECONDS = 120  # longer than any single advance step; a crashed holder's lock expires
DEFAULT_TWAP_SLICES = 5
DEFAULT_TWAP_DURATION_SECONDS = 60.0
DEFAULT_LIMIT_TIMEOUT_SECONDS = 30.0
LIMIT_OFFSET_PCT = Decimal("0.02")  # a passive limit sits 0.02 % inside the reference
MAX_REPRICES = 2
CANCEL_RETRY_SECONDS = 2.0  # a cancel that failed is tried again this much later
RATE_WAIT_SECONDS = 5.0  # a slice held back by the order-rate limit is tried again this much later
VOLUME_PROFILE_DAYS = 7  # history behind VWAP's intraday volume profile
LIQUIDITY_BARS = 20  # bars averaged for SMART's "volume of one bar"
ADVANCE_TASK = "trading.execution.advance_intent"  # by name: the task module is an edge above this one


class IntentError(ValueError):
    """A request that cannot become an intent (unknown symbol, bad strategy, ...)."""


# EXEC_RISK_SERVICE_SHADOW: risk validates and execution plans, but, like the system mode SHADOW,
# no order goes to the exchange (the emergency flatten excepted, as in SHADOW mode).
SHADOW_SWITCH_REASON = "EXEC_RISK_SERVICE_SHADOW: decision and plan recorded, no order sent"


def _shadow_reason(mode: Mode) -> str | None:
    """Why an approved intent must not send orders (SHADOW mode or the service's SHADOW switch)."""
    if mode == Mode.SHADOW:
        return "SHADOW mode: decision recorded, no order sent"
    if service_shadow(Service.EXEC_RISK):
        return SHADOW_SWITCH_REASON
    return None


# --- creating intents -----------------------------------------------------------------------


def _symbol(exchange: str, name: str) -> Symbol:
    sym = Symbol.objects.filter(exchange=exchange, symbol=name, active=True).first()
    if sym is None:
        raise IntentError(f"unknown symbol {name!r} on {exchange}")
    return sym


def intent_create(*, key: str, source: str, symbol: str, side: str, size_usd: Decimal | None = None,
                  amount: Decimal | None = None, leverage: int = 1, reduce_only: bool = False,
                  strategy: str = ExecutionStrategy.SMART, order_type: str = OrderType.MARKET,
                  limit_price: Decimal | None = None,
                  params: dict | None = None, confidence: Decimal | None = None, entry_model: str = "",
                  stop_loss_price: Decimal | None = None, take_profit_price: Decimal | None = None,
                  exit_reason: str = "", position: Position | None = None, created_by: str = "",
                  trace_id: str | None = None, symbol_obj: Symbol | None = None) -> tuple[ExecutionIntent, bool]:
    """Create (or find, by key) an intent. Exactly one of size_usd / amount is needed. A key
    already used returns the existing intent (created=False) whatever the other arguments."""
    exchange = exchange_id()
    if side not in tuple(Side):
        raise IntentError(f"side must be 'buy' or 'sell', got {side!r}")
    if strategy not in tuple(ExecutionStrategy):
        raise IntentError(f"unknown strategy {strategy!r}; use one of {', '.join(ExecutionStrategy)}")
    if (size_usd is None) == (amount is None):
        raise IntentError("give exactly one of size_usd and amount")
    if (size_usd is not None and not size_usd > 0) or (amount is not None and not amount > 0):
        raise IntentError(f"size must be positive (size_usd={size_usd}, amount={amount})")
    sym = symbol_obj if symbol_obj is not None and symbol_obj.symbol == symbol else _symbol(exchange, symbol)
    try:
        with transaction.atomic():
            intent = ExecutionIntent.objects.create(
                intent_key=key, source=source, exchange=exchange, symbol=sym, side=side,
                amount=amount or ZERO, size_usd=size_usd or ZERO, leverage=leverage, reduce_only=reduce_only,
                order_type=order_type, limit_price=limit_price, requested_strategy=strategy, params=params or {},
                confidence=confidence, entry_model=entry_model[:NAME_MAX], stop_loss_price=stop_loss_price,
                take_profit_price=take_profit_price, exit_reason=exit_reason, position=position,
                trace_id=trace_id or current_trace_id() or "", created_by=created_by[:USER_MAX])
    except IntegrityError:  # a duplicate delivery (or a concurrent one) created it
        return ExecutionIntent.objects.select_related("symbol").get(intent_key=key), False
    return intent, True


# --- locking ----------------------------------------------------------------------------------


class _IntentLock:
    """A short Redis lock per intent: one process works an intent at a time (a DB row lock would
    have to span the exchange call). Released only by its holder (redis-py's token-checked
    lock), so a holder that overran the expiry cannot free a successor's lock."""

    def __init__(self, intent_id: int):
        self.lock = redis_client().lock(f"qt:exec:lock:intent:{intent_id}", timeout=INTENT_LOCK_SECONDS,
                                  blocking=False)
        self.held = False

    def __enter__(self) -> bool:
        self.held = bool(self.lock.acquire(blocking=False))
        return self.held

    def __exit__(self, *exc) -> None:
        if self.held:
            try:
                self.lock.release()
            except Exception:  # expired meanwhile (LockNotOwnedError): nothing of ours to release
                log.warning("intent lock expired before release", lock=self.lock.name)


def _set(intent: ExecutionIntent, **fields) -> None:
    for k, v in fields.items():
        setattr(intent, k, v)
    intent.save(update_fields=[*fields, "updated_at"])


# --- validation and planning -------------------------------------------------------------------


def _quantize_amount(amount: Decimal, sym: Symbol) -> Decimal:
    amount, _ = planning.intent_quantities(amount=amount, size_usd=ZERO, reference_price=None, lot_size=sym.lot_size)
    return amount


def _bar_liquidity(sym: Symbol) -> tuple[Decimal, int]:
    from trading.marketdata.selectors import last_bars
    from trading.marketdata.timeframes import seconds

    tf = settings.UNIVERSE_TIMEFRAME
    rows = last_bars([sym.pk], tf, LIQUIDITY_BARS)[sym.pk]
    if not len(rows):
        return ZERO, int(seconds(tf))
    quote_volume = float((rows[:, 5] * rows[:, 4]).mean())
    return to_decimal(quote_volume, "bar quote volume"), int(seconds(tf))


def _volume_profile(sym: Symbol):
    from trading.marketdata.selectors import last_bars
    from trading.marketdata.timeframes import seconds

    tf = settings.UNIVERSE_TIMEFRAME
    n = int(VOLUME_PROFILE_DAYS * 86400 / seconds(tf))
    rows = last_bars([sym.pk], tf, n)[sym.pk]
    return planning.intraday_volume_profile(rows[:, 0].astype("int64") if len(rows) else [],
                                            rows[:, 5] if len(rows) else [])


def _plan(intent: ExecutionIntent, sym: Symbol, ref: Decimal, now: datetime) -> tuple[str, list[dict], str]:
    """(strategy, slices as JSON, why)."""
    strategy = intent.requested_strategy
    params = intent.params or {}
    why = f"requested {strategy}"
    slices = int(params.get("slices") or DEFAULT_TWAP_SLICES)
    duration = float(params.get("duration_seconds") if params.get("duration_seconds") is not None
                     else DEFAULT_TWAP_DURATION_SECONDS)
    if strategy == ExecutionStrategy.SMART:
        if intent.reduce_only or intent.source in (IntentSource.POSITION_EXIT, IntentSource.EMERGENCY):
            strategy, why = ExecutionStrategy.MARKET, "exits go at market"
        else:
            volume, bar_seconds = _bar_liquidity(sym)
            choice = planning.choose_strategy(notional_usd=intent.amount * ref, bar_quote_volume_usd=volume,
                                              bar_seconds=bar_seconds)
            strategy, why, slices, duration = choice.strategy, choice.reason, choice.slices, choice.duration_seconds
    lot, min_amount = sym.lot_size, (sym.min_notional / ref if ref > 0 else ZERO)
    if strategy == ExecutionStrategy.MARKET:
        plan = [planning.Slice(index=0, amount=intent.amount, not_before=now)]
    elif strategy == ExecutionStrategy.LIMIT:
        price = intent.limit_price or planning.limit_price(intent.side, ref, LIMIT_OFFSET_PCT, sym.tick_size)
        timeout = float(params.get("limit_timeout_seconds") or DEFAULT_LIMIT_TIMEOUT_SECONDS)
        return strategy, [{"index": 0, "amount": str(intent.amount), "not_before": now.isoformat(),
                           "type": OrderType.LIMIT, "price": str(price), "timeout_seconds": timeout}], why
    elif strategy == ExecutionStrategy.TWAP:
        plan = planning.plan_twap(amount=intent.amount, slices=slices, duration_seconds=duration, start=now,
                                  lot_size=lot, min_amount=min_amount)
    else:
        plan = planning.plan_vwap(amount=intent.amount, slices=slices, duration_seconds=duration, start=now,
                                  profile=_volume_profile(sym), lot_size=lot, min_amount=min_amount)
    return strategy, [{"index": s.index, "amount": str(s.amount), "not_before": s.not_before.isoformat(),
                       "type": OrderType.MARKET} for s in plan], why


def intent_process(intent_id: int, *, intent: ExecutionIntent | None = None) -> ExecutionIntent:
    """Validate a PENDING intent and start it; advance it if already WORKING. `intent`: the row
    the caller just created (saves reading it again)."""
    from risk.services.modes import mode_get
    from risk.services.validation import IntentRequest, intent_validate

    with _IntentLock(intent_id) as held:
        if not held:
            return ExecutionIntent.objects.get(pk=intent_id)
        if intent is None or intent.pk != intent_id or intent.status != IntentStatus.PENDING:
            intent = ExecutionIntent.objects.select_related("symbol").get(pk=intent_id)
        if intent.status != IntentStatus.PENDING:
            pass
        else:
            sym = intent.symbol
            ref, ref_age = reference_price(intent.exchange, sym.symbol)
            intent.amount, intent.size_usd = planning.intent_quantities(
                amount=intent.amount, size_usd=intent.size_usd, reference_price=ref, lot_size=sym.lot_size)
            reduce_only = intent.reduce_only
            spot = sym.market_type == MarketType.SPOT
            if spot:
                intent.leverage = 1
            signal_price = (intent.params or {}).get("signal_price")
            req = IntentRequest(symbol=sym.symbol, side=intent.side, size_usd=intent.size_usd,
                                leverage=intent.leverage, reduce_only=reduce_only, confidence=intent.confidence,
                                intent_key=intent.intent_key,
                                # the collar checks the price the decision was made at: the limit
                                # price, or the price the signal saw
                                price=intent.limit_price if intent.order_type == OrderType.LIMIT else (
                                    to_decimal(signal_price, "signal_price") if signal_price else None),
                                source=intent.source)
            problems = planning.preflight(symbol=sym.symbol, side=intent.side, reduce_only=reduce_only, spot=spot,
                                          amount=intent.amount, size_usd=intent.size_usd, reference_price=ref,
                                          lot_size=sym.lot_size, min_notional=sym.min_notional)
            if problems:
                _set(intent, status=IntentStatus.REJECTED, reason="; ".join(problems)[:TEXT_MAX],
                     amount=intent.amount, size_usd=intent.size_usd)
                publish(EventType.RISK_ALERT, {"severity": Severity.WARNING, "rule": "TRADE_BLOCKED",
                                               "message": f"{intent.side} {sym.symbol} blocked: {intent.reason}",
                                               "symbol": sym.symbol, "rejected": True,
                                               "reasons": [{"rule": "order", "message": p} for p in problems]},
                        trace_id=intent.trace_id or None)
                return intent
            if intent.source == IntentSource.EMERGENCY:
                verdict, decision = None, None  # the emergency flatten runs in HALTED by design
            else:
                verdict, decision = intent_validate(req, symbol=sym, reference=(ref, ref_age))
            if verdict is not None and not verdict.approved:
                _set(intent, status=IntentStatus.REJECTED, reason=verdict.reason[:TEXT_MAX], amount=intent.amount,
                     size_usd=intent.size_usd, policy_version=verdict.policy_version,
                     risk_decision_id=decision.pk if decision else None)
                return intent
            policy_version = verdict.policy_version if verdict is not None else None
            shadow_why = None if intent.source == IntentSource.EMERGENCY else _shadow_reason(mode_get())
            if shadow_why is not None:
                planned = {}
                if shadow_why == SHADOW_SWITCH_REASON:  # the switch: execution plans too, then sends nothing
                    try:
                        strategy, plan, _ = _plan(intent, sym, ref, timezone.now())
                        planned = {"strategy": strategy, "plan": plan}
                    except ValueError as exc:
                        shadow_why = f"{shadow_why} (no plan: {exc})"[:TEXT_MAX]
                _set(intent, status=IntentStatus.SHADOW, reason=shadow_why,
                     amount=intent.amount, size_usd=intent.size_usd, arrival_price=ref,
                     policy_version=policy_version, risk_decision_id=decision.pk if decision else None, **planned)
                log.info("intent approved in shadow: no order sent", intent_key=intent.intent_key,
                         symbol=sym.symbol, reason=shadow_why, trace_id=intent.trace_id)
                return intent
            now = timezone.now()
            try:
                strategy, plan, why = _plan(intent, sym, ref, now)
            except ValueError as exc:
                _set(intent, status=IntentStatus.REJECTED, reason=f"cannot plan the order: {exc}"[:TEXT_MAX])
                return intent
            _set(intent, status=IntentStatus.WORKING, strategy=strategy, plan=plan, next_slice=0,
                 next_action_at=now, arrival_price=ref, amount=intent.amount, size_usd=intent.size_usd,
                 leverage=intent.leverage, policy_version=policy_version,
                 risk_decision_id=decision.pk if decision else None, reason=why[:TEXT_MAX])
            log.info("intent approved", intent_key=intent.intent_key, strategy=strategy, slices=len(plan),
                     amount=str(intent.amount), symbol=sym.symbol)
        return _advance_locked(intent)


def intent_advance(intent_id: int) -> ExecutionIntent:
    with _IntentLock(intent_id) as held:
        intent = ExecutionIntent.objects.select_related("symbol").get(pk=intent_id)
        if not held:
            return intent
        return _advance_locked(intent)


def intent_finish(intent: ExecutionIntent, status: str, reason: str = "", *,
            orders: list[Order] | None = None) -> ExecutionIntent:
    orders = list(intent.orders.all()) if orders is None else orders
    filled = sum((o.filled for o in orders), ZERO)
    cost = sum((o.filled * (o.average_price or ZERO) for o in orders), ZERO)
    fees = sum((o.fee_usd for o in orders), ZERO)
    avg = (cost / filled) if filled > 0 else None
    slippage = planning.slippage_pct(intent.side, intent.arrival_price, avg) if avg and intent.arrival_price else None
    if status == IntentStatus.DONE and filled == 0:
        status = IntentStatus.FAILED
        reason = reason or "; ".join(o.status_reason for o in orders if o.status_reason)[:TEXT_MAX] or "nothing filled"
    _set(intent, status=status, reason=(reason or intent.reason)[:TEXT_MAX], filled_amount=filled, average_price=avg,
         next_slice=intent.next_slice,
         fees_usd=fees, slippage_pct=slippage.quantize(SLIPPAGE_QUANTUM) if slippage is not None else None,
         next_action_at=None)
    _publish_intent_result(intent, orders, status, filled, avg, fees, slippage)
    log.info("intent finished", intent_key=intent.intent_key, status=status, filled=str(filled),
             average_price=str(avg), slippage_pct=str(slippage), reason=reason)
    return intent


def _publish_intent_result(intent: ExecutionIntent, orders: list[Order], status: str, filled: Decimal,
                           avg: Decimal | None, fees: Decimal, slippage: Decimal | None) -> None:
    """One execution.result for the whole intent (intent_complete=true): the aggregate of its slices."""
    if intent.amount <= 0:
        return
    last = max(orders, key=lambda o: o.slice_index) if orders else None
    if filled >= intent.amount:
        result = ExecutionStatus.FILLED
    elif filled > 0:
        result = ExecutionStatus.PARTIALLY_FILLED
    else:
        result = ExecutionStatus.REJECTED if status == IntentStatus.FAILED else ExecutionStatus.CANCELLED
    publish(EventType.EXECUTION_RESULT, {
        "client_order_id": last.client_order_id if last else planning.client_order_id(intent.intent_key, 0),
        "exchange_order_id": (last.exchange_order_id or None) if last else None,
        "symbol": intent.symbol.symbol, "side": intent.side, "status": result,
        "requested_amount": intent.amount, "filled_amount": min(filled, intent.amount),
        "average_price": avg, "filled_size_usd": (filled * (avg or ZERO)).quantize(CENT),
        "leverage": intent.leverage, "slippage_pct": float(slippage) if slippage is not None else None,
        "fee_usd": fees, "strategy": intent.strategy or intent.requested_strategy, "intent_key": intent.intent_key,
        "intent_complete": True, "reason": (intent.reason or "")[:SHORT_TEXT_MAX],
    }, trace_id=intent.trace_id or None)


def orders_cancel(orders: list[Order], gateway) -> None:
    for o in orders:
        if not o.is_open or o.status == OrderStatus.PENDING_SUBMIT and o.submit_attempts == 0:
            if o.status == OrderStatus.PENDING_SUBMIT:
                Order.objects.filter(pk=o.pk, submit_attempts=0).update(
                    status=OrderStatus.CANCELLED, status_reason="cancelled before it was sent")
            continue
        try:
            data = gateway.cancel_order(o.exchange_order_id or "", o.symbol.symbol,
                                        {"clientOrderId": o.client_order_id})
            order_svc.order_apply(o, data)
        except errors.OrderNotFound:
            try:
                found = order_svc.order_lookup(o, gateway)
            except errors.ExchangeError as exc:
                log.error("cancel: order not found and the lookup failed", client_order_id=o.client_order_id,
                          error=str(exc))
                continue
            if found is not None:
                order_svc.order_apply(o, found)
        except errors.ExchangeError as exc:
            log.error("cancel failed", client_order_id=o.client_order_id, error=str(exc))


def _advance_locked(intent: ExecutionIntent) -> ExecutionIntent:
    from risk.services.modes import mode_get
    from risk.services.policy import policy_get

    if intent.status != IntentStatus.WORKING:
        return intent
    gateway = execution_gateway()
    mode = mode_get()
    # A fresh intent has no orders yet (a slice-0 row left by a crash is found again by _place).
    orders = ([] if intent.next_slice == 0 else
              list(intent.orders.select_related("symbol").order_by("slice_index")))
    emergency = intent.source == IntentSource.EMERGENCY
    if not emergency and (mode == Mode.HALTED or (mode == Mode.REDUCE_ONLY and not intent.reduce_only)
                          or mode == Mode.SHADOW):
        orders_cancel(orders, gateway)
        return intent_finish(intent, IntentStatus.STOPPED, f"stopped: system mode is {mode.value}")
    if not emergency and service_shadow(Service.EXEC_RISK):  # started before the switch was set
        orders_cancel(orders, gateway)
        return intent_finish(intent, IntentStatus.STOPPED, "stopped: EXEC_RISK_SERVICE_SHADOW is on: no more orders")
    # Refresh working orders (limit orders rest; a slice may have been left unknown).
    for o in orders:
        if o.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN):
            try:
                found = order_svc.order_lookup(o, gateway)
            except errors.ExchangeError as exc:
                log.warning("order refresh failed", client_order_id=o.client_order_id, error=str(exc))
                continue
            if found is not None:
                order_svc.order_apply(o, found)
        elif o.status == OrderStatus.PENDING_SUBMIT:
            order_svc.order_submit(o, gateway=gateway)
    policy = policy_get()
    if orders:
        stopped = _slippage_stop(intent, policy, gateway)
        if stopped is not None:
            return stopped
    now = timezone.now()
    if intent.strategy == ExecutionStrategy.LIMIT:
        return _advance_limit(intent, orders, gateway, now)
    while intent.next_slice < len(intent.plan):
        item = intent.plan[intent.next_slice]
        not_before = datetime.fromisoformat(item["not_before"])
        if not_before > now:
            _set(intent, next_action_at=not_before, next_slice=intent.next_slice)
            _schedule(intent, (not_before - now).total_seconds())
            return intent
        if intent.next_slice > 0 and _rate_full(intent.exchange, policy):
            # the policy's order rate also binds the slices of an intent: wait, do not burst
            _set(intent, next_action_at=now + timedelta(seconds=RATE_WAIT_SECONDS), next_slice=intent.next_slice)
            _schedule(intent, RATE_WAIT_SECONDS)
            return intent
        _place(intent, item, gateway)
        intent.next_slice += 1
        if intent.next_slice < len(intent.plan):  # more to send: record progress, check slippage
            _set(intent, next_slice=intent.next_slice)
            stopped = _slippage_stop(intent, policy, gateway)
            if stopped is not None:
                return stopped
    orders = list(intent.orders.all())
    if any(o.is_open for o in orders):
        _set(intent, next_action_at=now + timedelta(seconds=1), next_slice=intent.next_slice)
        _schedule(intent, 1.0)
        return intent
    return intent_finish(intent, IntentStatus.DONE, orders=orders)


def _rate_full(exchange: str, policy) -> bool:
    from trading.selectors import orders_last_minute_count

    return orders_last_minute_count(exchange) >= policy.max_orders_per_minute


def _slippage_stop(intent: ExecutionIntent, policy, gateway) -> ExecutionIntent | None:
    """The slippage cap against the arrival price: past it, cancel what works and send no more
    slices (reported as a risk.alert). None while within the cap."""
    orders = list(intent.orders.select_related("symbol").order_by("slice_index"))
    filled = sum((o.filled for o in orders), ZERO)
    if filled <= 0 or not intent.arrival_price:
        return None
    more_to_come = intent.next_slice < len(intent.plan) or any(o.is_open for o in orders)
    avg = sum((o.filled * (o.average_price or ZERO) for o in orders), ZERO) / filled
    if not more_to_come or not planning.exceeds_slippage_cap(intent.side, intent.arrival_price, avg,
                                                             policy.max_slippage_pct):
        return None
    orders_cancel(orders, gateway)
    slip = planning.slippage_pct(intent.side, intent.arrival_price, avg)
    reason = (f"slippage {slip:.4f} % against arrival {intent.arrival_price} exceeds the cap "
              f"{policy.max_slippage_pct} %: remaining slices not sent")
    publish(EventType.RISK_ALERT, {"severity": Severity.WARNING, "rule": "max_slippage", "message": reason,
                                   "symbol": intent.symbol.symbol, "rejected": False,
                                   "policy_version": policy.version}, trace_id=intent.trace_id or None)
    return intent_finish(intent, IntentStatus.STOPPED, reason)


def _place(intent: ExecutionIntent, item: dict, gateway) -> Order:
    cid = planning.client_order_id(intent.intent_key, int(item["index"]))
    fields = {"intent": intent, "slice_index": int(item["index"]), "symbol": intent.symbol, "side": intent.side,
              "type": item.get("type", OrderType.MARKET), "amount": to_decimal(item["amount"], "slice amount"),
              "price": to_decimal_or_none(item.get("price") or None, "slice price"),
              "reduce_only": intent.reduce_only,
              "leverage": intent.leverage, "strategy": intent.strategy, "policy_version": intent.policy_version,
              "trace_id": intent.trace_id}
    # Recorded (committed) before it is sent; the slice's deterministic id makes a second
    # attempt find this row instead of making another order.
    fresh = True
    try:
        if transaction.get_autocommit():
            order = Order.objects.create(exchange=intent.exchange, client_order_id=cid, **fields)
        else:
            with transaction.atomic():
                order = Order.objects.create(exchange=intent.exchange, client_order_id=cid, **fields)
    except IntegrityError:
        order = Order.objects.get(exchange=intent.exchange, client_order_id=cid)
        fresh = False
    order.symbol = intent.symbol
    order.intent = intent
    return order_svc.order_submit(order, gateway=gateway, fresh=fresh)


def _advance_limit(intent: ExecutionIntent, orders: list[Order], gateway, now: datetime) -> ExecutionIntent:
    if intent.next_slice == 0:
        _place(intent, intent.plan[0], gateway)
        _set(intent, next_slice=1)
        orders = list(intent.orders.select_related("symbol").order_by("slice_index"))
    current = orders[-1] if orders else None
    filled = sum((o.filled for o in orders), ZERO)
    if current is None or (not current.is_open and filled >= intent.amount):
        return intent_finish(intent, IntentStatus.DONE)
    item = intent.plan[-1]
    placed_at = current.created_at
    timeout = float(item.get("timeout_seconds") or DEFAULT_LIMIT_TIMEOUT_SECONDS)
    deadline = placed_at + timedelta(seconds=timeout)
    if current.is_open and now < deadline:
        _set(intent, next_action_at=deadline)
        _schedule(intent, (deadline - now).total_seconds())
        return intent
    if current.is_open:
        orders_cancel([current], gateway)
        current.refresh_from_db(fields=["status", "filled"])
        if current.is_open:  # the cancel is not confirmed: never reprice beside a live order
            _set(intent, next_action_at=now + timedelta(seconds=CANCEL_RETRY_SECONDS))
            _schedule(intent, CANCEL_RETRY_SECONDS)
            return intent
    orders = list(intent.orders.select_related("symbol").order_by("slice_index"))
    filled = sum((o.filled for o in orders), ZERO)
    remaining = _quantize_amount(intent.amount - filled, intent.symbol)
    reprices = len(intent.plan) - 1
    if remaining <= 0:
        return intent_finish(intent, IntentStatus.DONE)
    if (intent.params or {}).get("on_timeout", "reprice") != "reprice" or reprices >= MAX_REPRICES:
        return intent_finish(intent, IntentStatus.DONE if filled > 0 else IntentStatus.STOPPED,
                       f"limit order timed out after {timeout:.0f}s; {remaining} left unfilled, cancelled")
    ref, _ = reference_price(intent.exchange, intent.symbol.symbol)
    if ref is None:
        return intent_finish(intent, IntentStatus.STOPPED, "limit reprice: no reference price")
    price = planning.reprice(intent.side, to_decimal(item["price"], "limit price"), ref, LIMIT_OFFSET_PCT,
                             intent.symbol.tick_size)
    new = {"index": len(intent.plan), "amount": str(remaining), "not_before": now.isoformat(),
           "type": OrderType.LIMIT, "price": str(price), "timeout_seconds": timeout}
    _set(intent, plan=[*intent.plan, new], next_slice=len(intent.plan) + 1)
    _place(intent, new, gateway)
    _set(intent, next_action_at=now + timedelta(seconds=timeout))
    _schedule(intent, timeout)
    return intent


def _schedule(intent: ExecutionIntent, delay_seconds: float) -> None:
    intent_wake(intent.pk, delay_seconds)


def intent_wake(intent_id: int, delay_seconds: float = 0.0) -> None:
    """Advance the intent after `delay_seconds`, once the current transaction commits (the beat
    sweep is the fallback if this message is lost)."""
    transaction.on_commit(lambda: current_app.send_task(ADVANCE_TASK, (intent_id,),
                                                        countdown=max(0.0, delay_seconds)))


