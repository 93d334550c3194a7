"""Intents: from a signal, an operator or an orchestrator to orders, through the risk path.

intent_create      one ExecutionIntent per deterministic key (a duplicate delivery finds it)
intent_process     PENDING -> risk validation -> REJECTED | SHADOW | WORKING (strategy planned)
intent_advance     WORKING -> place the slices that are due, limit timeouts, slippage cap,
                   mode checks -> DONE | STOPPED | FAILED
emergency_flatten  cancel every open order, close every position (emergency.stop)

Nothing here holds a database transaction across an exchange call: the exchange is another
system, and a crash must leave our rows in a state reconciliation can complete.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.events.schemas import ExecutionStrategy
from qtweb.health.status import redis_client
from qtweb.logging import get_logger
from qtweb.tracing import current_trace_id
from risk.domain.modes import Mode
from trading.exchanges import errors
from trading.execution import orders as order_svc
from trading.execution import planning
from trading.execution.gateway import exchange_id, execution_gateway
from trading.marketdata.reference import reference_price
from trading.models import (
    ExecutionIntent,
    IntentSource,
    IntentStatus,
    MarketType,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    Symbol,
)

log = get_logger(__name__)

ZERO = Decimal("0")
CENT = Decimal("0.01")
STRATEGIES = tuple(s.value for s in ExecutionStrategy)
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
PENDING_GRACE_SECONDS = 5  # a PENDING intent younger than this is still being processed inline
SWEEP_BATCH = 50


class IntentError(ValueError):
    """A request that cannot become an intent (unknown symbol, bad strategy, ...)."""


# --- creating intents -----------------------------------------------------------------------


def _symbol(exchange: str, name: str) -> Symbol:
    sym = Symbol.objects.filter(exchange=exchange, symbol=name, active=True).first()
    if sym is None:
        raise IntentError(f"unknown symbol {name!r} on {exchange}")
    return sym


def intent_create(*, key: str, source: str, symbol: str, side: str, size_usd: Decimal | None = None,
                  amount: Decimal | None = None, leverage: int = 1, reduce_only: bool = False,
                  strategy: str = "smart", order_type: str = "market", limit_price: Decimal | None = None,
                  params: dict | None = None, confidence: Decimal | None = None, entry_model: str = "",
                  stop_loss_price: Decimal | None = None, take_profit_price: Decimal | None = None,
                  exit_reason: str = "", position: Position | None = None, created_by: str = "",
                  trace_id: str | None = None, symbol_obj: Symbol | None = None) -> tuple[ExecutionIntent, bool]:
    """Create (or find, by key) an intent. Exactly one of size_usd / amount is needed. A key
    already used returns the existing intent (created=False) whatever the other arguments."""
    exchange = exchange_id()
    if side not in ("buy", "sell"):
        raise IntentError(f"side must be 'buy' or 'sell', got {side!r}")
    if strategy not in STRATEGIES:
        raise IntentError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
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
                confidence=confidence, entry_model=entry_model[:128], stop_loss_price=stop_loss_price,
                take_profit_price=take_profit_price, exit_reason=exit_reason, position=position,
                trace_id=trace_id or current_trace_id() or "", created_by=created_by[:150])
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
    step = sym.lot_size if sym.lot_size and sym.lot_size > 0 else Decimal("0.00000001")
    return planning.round_down_to_step(amount, step)


def _bar_liquidity(sym: Symbol) -> tuple[Decimal, int]:
    from trading.marketdata.selectors import last_bars
    from trading.marketdata.timeframes import seconds

    tf = settings.UNIVERSE_TIMEFRAME
    rows = last_bars([sym.pk], tf, LIQUIDITY_BARS)[sym.pk]
    if not len(rows):
        return ZERO, int(seconds(tf))
    quote_volume = float((rows[:, 5] * rows[:, 4]).mean())
    return Decimal(repr(quote_volume)), int(seconds(tf))


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
    if strategy == "smart":
        if intent.reduce_only or intent.source in (IntentSource.POSITION_EXIT, IntentSource.EMERGENCY):
            strategy, why = "market", "exits go at market"
        else:
            volume, bar_seconds = _bar_liquidity(sym)
            choice = planning.choose_strategy(notional_usd=intent.amount * ref, bar_quote_volume_usd=volume,
                                              bar_seconds=bar_seconds)
            strategy, why, slices, duration = choice.strategy, choice.reason, choice.slices, choice.duration_seconds
    lot, min_amount = sym.lot_size, (sym.min_notional / ref if ref > 0 else ZERO)
    if strategy == "market":
        plan = [planning.Slice(index=0, amount=intent.amount, not_before=now)]
    elif strategy == "limit":
        price = intent.limit_price or planning.limit_price(intent.side, ref, LIMIT_OFFSET_PCT, sym.tick_size)
        timeout = float(params.get("limit_timeout_seconds") or DEFAULT_LIMIT_TIMEOUT_SECONDS)
        return strategy, [{"index": 0, "amount": str(intent.amount), "not_before": now.isoformat(),
                           "type": "limit", "price": str(price), "timeout_seconds": timeout}], why
    elif strategy == "twap":
        plan = planning.plan_twap(amount=intent.amount, slices=slices, duration_seconds=duration, start=now,
                                  lot_size=lot, min_amount=min_amount)
    else:
        plan = planning.plan_vwap(amount=intent.amount, slices=slices, duration_seconds=duration, start=now,
                                  profile=_volume_profile(sym), lot_size=lot, min_amount=min_amount)
    return strategy, [{"index": s.index, "amount": str(s.amount), "not_before": s.not_before.isoformat(),
                       "type": "market"} for s in plan], why


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
            if intent.amount == 0 and ref:
                intent.amount = _quantize_amount(intent.size_usd / ref, sym)
            elif intent.amount > 0:
                intent.amount = _quantize_amount(intent.amount, sym)
            if intent.size_usd == 0 and ref:
                intent.size_usd = (intent.amount * ref).quantize(CENT, rounding=ROUND_DOWN)
            reduce_only = intent.reduce_only
            if sym.market_type == MarketType.SPOT:
                intent.leverage = 1
            req = IntentRequest(symbol=sym.symbol, side=intent.side, size_usd=intent.size_usd,
                                leverage=intent.leverage, reduce_only=reduce_only, confidence=intent.confidence,
                                intent_key=intent.intent_key,
                                # the collar checks the price the decision was made at: the limit
                                # price, or the price the signal saw
                                price=intent.limit_price if intent.order_type == "limit" else (
                                    Decimal(intent.params["signal_price"]) if (intent.params or {}).get(
                                        "signal_price") else None),
                                source=intent.source)
            problems = []
            if ref is None:
                problems.append(f"no price known for {sym.symbol}")
            elif intent.amount <= 0:
                problems.append(f"size {intent.size_usd} USD is below one lot ({sym.lot_size}) of {sym.symbol}")
            elif sym.min_notional and intent.amount * ref < sym.min_notional:
                problems.append(f"order value {(intent.amount * ref).quantize(CENT)} USD is below the minimum "
                                f"{sym.min_notional} of {sym.symbol}")
            if sym.market_type == MarketType.SPOT and intent.side == "sell" and not reduce_only:
                problems.append(f"{sym.symbol} is a spot market: selling needs a long position (no shorting)")
            if problems:
                _set(intent, status=IntentStatus.REJECTED, reason="; ".join(problems)[:2000],
                     amount=intent.amount, size_usd=intent.size_usd)
                publish(EventType.RISK_ALERT, {"severity": "warning", "rule": "TRADE_BLOCKED",
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
                _set(intent, status=IntentStatus.REJECTED, reason=verdict.reason[:2000], amount=intent.amount,
                     size_usd=intent.size_usd, policy_version=verdict.policy_version,
                     risk_decision_id=decision.pk if decision else None)
                return intent
            policy_version = verdict.policy_version if verdict is not None else None
            if mode_get() == Mode.SHADOW and intent.source != IntentSource.EMERGENCY:
                _set(intent, status=IntentStatus.SHADOW, reason="SHADOW mode: decision recorded, no order sent",
                     amount=intent.amount, size_usd=intent.size_usd, arrival_price=ref,
                     policy_version=policy_version, risk_decision_id=decision.pk if decision else None)
                return intent
            now = timezone.now()
            try:
                strategy, plan, why = _plan(intent, sym, ref, now)
            except ValueError as exc:
                _set(intent, status=IntentStatus.REJECTED, reason=f"cannot plan the order: {exc}"[:2000])
                return intent
            _set(intent, status=IntentStatus.WORKING, strategy=strategy, plan=plan, next_slice=0,
                 next_action_at=now, arrival_price=ref, amount=intent.amount, size_usd=intent.size_usd,
                 leverage=intent.leverage, policy_version=policy_version,
                 risk_decision_id=decision.pk if decision else None, reason=why[:2000])
            log.info("intent approved", intent_key=intent.intent_key, strategy=strategy, slices=len(plan),
                     amount=str(intent.amount), symbol=sym.symbol)
        return _advance_locked(intent)


def intent_advance(intent_id: int) -> ExecutionIntent:
    with _IntentLock(intent_id) as held:
        intent = ExecutionIntent.objects.select_related("symbol").get(pk=intent_id)
        if not held:
            return intent
        return _advance_locked(intent)


def _finish(intent: ExecutionIntent, status: str, reason: str = "", *,
            orders: list[Order] | None = None) -> ExecutionIntent:
    orders = list(intent.orders.all()) if orders is None else orders
    filled = sum((o.filled for o in orders), ZERO)
    cost = sum((o.filled * (o.average_price or ZERO) for o in orders), ZERO)
    fees = sum((o.fee_usd for o in orders), ZERO)
    avg = (cost / filled) if filled > 0 else None
    slippage = planning.slippage_pct(intent.side, intent.arrival_price, avg) if avg and intent.arrival_price else None
    if status == IntentStatus.DONE and filled == 0:
        status = IntentStatus.FAILED
        reason = reason or "; ".join(o.status_reason for o in orders if o.status_reason)[:2000] or "nothing filled"
    _set(intent, status=status, reason=(reason or intent.reason)[:2000], filled_amount=filled, average_price=avg,
         next_slice=intent.next_slice,
         fees_usd=fees, slippage_pct=slippage.quantize(Decimal("0.000001")) if slippage is not None else None,
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
        result = "filled"
    elif filled > 0:
        result = "partially_filled"
    else:
        result = "rejected" if status == IntentStatus.FAILED else "cancelled"
    publish(EventType.EXECUTION_RESULT, {
        "client_order_id": last.client_order_id if last else planning.client_order_id(intent.intent_key, 0),
        "exchange_order_id": (last.exchange_order_id or None) if last else None,
        "symbol": intent.symbol.symbol, "side": intent.side, "status": result,
        "requested_amount": intent.amount, "filled_amount": min(filled, intent.amount),
        "average_price": avg, "filled_size_usd": (filled * (avg or ZERO)).quantize(CENT),
        "leverage": intent.leverage, "slippage_pct": float(slippage) if slippage is not None else None,
        "fee_usd": fees, "strategy": intent.strategy or intent.requested_strategy, "intent_key": intent.intent_key,
        "intent_complete": True, "reason": (intent.reason or "")[:500],
    }, trace_id=intent.trace_id or None)


def _cancel_open_orders(orders: list[Order], gateway) -> None:
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
        _cancel_open_orders(orders, gateway)
        return _finish(intent, IntentStatus.STOPPED, f"stopped: system mode is {mode.value}")
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
    if intent.strategy == "limit":
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
    return _finish(intent, IntentStatus.DONE, orders=orders)


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
    _cancel_open_orders(orders, gateway)
    slip = planning.slippage_pct(intent.side, intent.arrival_price, avg)
    reason = (f"slippage {slip:.4f} % against arrival {intent.arrival_price} exceeds the cap "
              f"{policy.max_slippage_pct} %: remaining slices not sent")
    publish(EventType.RISK_ALERT, {"severity": "warning", "rule": "max_slippage", "message": reason,
                                   "symbol": intent.symbol.symbol, "rejected": False,
                                   "policy_version": policy.version}, trace_id=intent.trace_id or None)
    return _finish(intent, IntentStatus.STOPPED, reason)


def _place(intent: ExecutionIntent, item: dict, gateway) -> Order:
    cid = planning.client_order_id(intent.intent_key, int(item["index"]))
    fields = {"intent": intent, "slice_index": int(item["index"]), "symbol": intent.symbol, "side": intent.side,
              "type": item.get("type", "market"), "amount": Decimal(item["amount"]),
              "price": Decimal(item["price"]) if item.get("price") else None, "reduce_only": intent.reduce_only,
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
        return _finish(intent, IntentStatus.DONE)
    item = intent.plan[-1]
    placed_at = current.created_at
    timeout = float(item.get("timeout_seconds") or DEFAULT_LIMIT_TIMEOUT_SECONDS)
    deadline = placed_at + timedelta(seconds=timeout)
    if current.is_open and now < deadline:
        _set(intent, next_action_at=deadline)
        _schedule(intent, (deadline - now).total_seconds())
        return intent
    if current.is_open:
        _cancel_open_orders([current], gateway)
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
        return _finish(intent, IntentStatus.DONE)
    if (intent.params or {}).get("on_timeout", "reprice") != "reprice" or reprices >= MAX_REPRICES:
        return _finish(intent, IntentStatus.DONE if filled > 0 else IntentStatus.STOPPED,
                       f"limit order timed out after {timeout:.0f}s; {remaining} left unfilled, cancelled")
    ref, _ = reference_price(intent.exchange, intent.symbol.symbol)
    if ref is None:
        return _finish(intent, IntentStatus.STOPPED, "limit reprice: no reference price")
    price = planning.reprice(intent.side, Decimal(item["price"]), ref, LIMIT_OFFSET_PCT, intent.symbol.tick_size)
    new = {"index": len(intent.plan), "amount": str(remaining), "not_before": now.isoformat(), "type": "limit",
           "price": str(price), "timeout_seconds": timeout}
    _set(intent, plan=[*intent.plan, new], next_slice=len(intent.plan) + 1)
    _place(intent, new, gateway)
    _set(intent, next_action_at=now + timedelta(seconds=timeout))
    _schedule(intent, timeout)
    return intent


def _schedule(intent: ExecutionIntent, delay_seconds: float) -> None:
    """Wake the intent up after delay (the beat sweep is the fallback if this is lost)."""
    from trading.tasks import advance_intent

    transaction.on_commit(lambda: advance_intent.apply_async((intent.pk,), countdown=max(0.0, delay_seconds)))


# --- sources ----------------------------------------------------------------------------------


def _entry_model(signal: dict) -> str:
    versions = signal.get("model_versions") or {}
    if not versions:
        return "ensemble"
    return ("ensemble(" + ",".join(f"{k}:{v}" for k, v in sorted(versions.items())) + ")")[:128]


def intent_from_rl_decision(decision_event) -> ExecutionIntent | None:
    """signal.generated + rl.decision -> an intent (keyed by the signal's event id, so the same
    signal sized twice still trades once). A signal against an open position closes it."""
    from qtweb.events.models import Event

    d = decision_event.payload
    action = d.get("action")
    size_usd = Decimal(str(d.get("final_size_usd") or "0"))
    if action not in ("BUY", "SELL"):
        return None
    signal_row = (Event.objects.filter(trace_id=decision_event.trace_id, type=EventType.SIGNAL_GENERATED.value)
                  .order_by("-timestamp").values("event_id", "payload").first())
    if signal_row is None:
        log.warning("rl.decision without its signal.generated: not traded", trace_id=decision_event.trace_id,
                    symbol=d.get("symbol"))
        return None
    signal = signal_row["payload"]
    side = "buy" if action == "BUY" else "sell"
    key = f"signal:{signal_row['event_id']}"
    exchange = exchange_id()
    sym = Symbol.objects.filter(exchange=exchange, symbol=d["symbol"]).first()
    position = (Position.objects.filter(exchange=exchange, symbol=sym, status=PositionStatus.OPEN).first()
                if sym is not None else None)
    opposite = position is not None and position.side != ("long" if side == "buy" else "short")
    signal_price = signal.get("price")
    common = {"key": key, "source": IntentSource.SIGNAL, "symbol": d["symbol"], "side": side,
              "params": {"signal_price": str(signal_price)} if signal_price else {},
              "confidence": Decimal(str(signal.get("confidence"))).quantize(Decimal("0.000001")),
              "entry_model": _entry_model(signal), "trace_id": decision_event.trace_id}
    if opposite:
        if position.exit_pending:
            return None
        intent, _ = intent_create(**common, amount=position.amount, reduce_only=True, strategy="market",
                                  exit_reason="signal_reversal", position=position, leverage=position.leverage,
                                  symbol_obj=sym)
        return intent
    if size_usd <= 0:
        return None
    from risk.services.policy import policy_get

    leverage = 1 if sym is None or sym.market_type == MarketType.SPOT else min(int(policy_get().max_leverage),
                                                                                 int(settings.EXECUTION_LEVERAGE))
    intent, _ = intent_create(**common, size_usd=size_usd.quantize(CENT), leverage=leverage, strategy="smart",
                              symbol_obj=sym)
    return intent


def _manual_strategy(r: dict) -> str:
    """A limit order runs the `limit` strategy (its price is the order's); a market order the one
    asked for, market by default. (ExecutionRequest refuses combinations that do not fit.)"""
    return r.get("strategy") or ("limit" if r["order_type"] == "limit" else "market")


def intent_from_request(event) -> ExecutionIntent:
    """execution.request (a manual order) -> an intent keyed by the operator's client id."""
    r = event.payload
    params = {k: r[k] for k in ("slices", "duration_seconds", "limit_timeout_seconds", "on_timeout") if r.get(k)
              is not None}
    intent, _ = intent_create(
        key=f"manual:{r['client_order_id']}", source=IntentSource.MANUAL, symbol=r["symbol"], side=r["side"],
        amount=Decimal(str(r["amount"])), leverage=int(r.get("leverage", 1)), reduce_only=bool(r.get("reduce_only")),
        strategy=_manual_strategy(r),
        order_type=r["order_type"], limit_price=Decimal(str(r["price"])) if r.get("price") else None,
        params=params, stop_loss_price=Decimal(str(r["stop_loss_price"])) if r.get("stop_loss_price") else None,
        take_profit_price=Decimal(str(r["take_profit_price"])) if r.get("take_profit_price") else None,
        created_by=r.get("requested_by") or "operator", trace_id=event.trace_id, exit_reason="manual")
    return intent


def exit_intent(position: Position, *, reason: str, key_suffix: str, source: str = IntentSource.POSITION_EXIT,
                trace_id: str | None = None) -> ExecutionIntent | None:
    """A reduce-only market intent closing `position` (TP/SL/trailing, governor, emergency).

    None while another exit of the position is in flight. Attempts are numbered under the same
    suffix, so an exit that was refused or failed (a stale price, a throttle, an exchange error)
    is tried again on the monitor's next run instead of waiting for the next bar."""
    with transaction.atomic():
        pos = Position.objects.select_for_update(of=("self",)).select_related("symbol").get(pk=position.pk)
        if pos.status != PositionStatus.OPEN or pos.amount <= 0 or pos.exit_pending:
            return None
        prefix = f"exit:{pos.pk}:{key_suffix}:"
        attempt = ExecutionIntent.objects.filter(intent_key__startswith=prefix).count()
        intent, _ = intent_create(
            key=f"{prefix}{attempt}", source=source, symbol=pos.symbol.symbol,
            side="sell" if pos.side == "long" else "buy", amount=pos.amount, leverage=pos.leverage, reduce_only=True,
            strategy="market", exit_reason=reason, position=pos, trace_id=trace_id or pos.trace_id or None,
            created_by="position-monitor", symbol_obj=pos.symbol)
    return intent


def flatten_pending() -> bool:
    from risk.models import GovernorState

    return GovernorState.objects.filter(pk=1, flatten_pending=True).exists()


def emergency_flatten_pending() -> dict | None:
    """The beat sweep's retry of an emergency stop that did not finish (exchange errors, a crash)."""
    from risk.models import GovernorState

    state = GovernorState.objects.filter(pk=1, flatten_pending=True).first()
    if state is None:
        return None
    return emergency_flatten(event_id=state.flatten_event_id, flatten=state.flatten_positions)


def emergency_flatten(*, event_id: str, flatten: bool, trace_id: str | None = None) -> dict:
    """Cancel every open order (ours and any the exchange holds), then close every position.

    Each order and position is handled on its own (one failure does not stop the rest). Until
    nothing is left open, the governor state keeps `flatten_pending` and the beat sweep runs
    this again; running it twice is harmless."""
    from risk.models import GovernorState

    gateway = execution_gateway()
    exchange = exchange_id()
    problems: list[str] = []
    for intent in ExecutionIntent.objects.filter(exchange=exchange, status=IntentStatus.WORKING).exclude(
            source=IntentSource.EMERGENCY).select_related("symbol"):
        try:
            _finish(intent, IntentStatus.STOPPED, "stopped by the emergency stop")
        except Exception as exc:
            problems.append(f"intent {intent.intent_key}: {exc}")
    open_orders = list(Order.objects.filter(exchange=exchange, status__in=[
        OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED]).exclude(
        intent__source=IntentSource.EMERGENCY).select_related("symbol", "intent"))
    for order in open_orders:
        try:
            _cancel_open_orders([order], gateway)
        except Exception as exc:
            problems.append(f"cancel {order.client_order_id}: {exc}")
    try:  # anything the exchange still holds (placed elsewhere, or not yet reconciled)
        for data in gateway.fetch_open_orders():
            if planning.is_ours(data.get("clientOrderId") or "") and Order.objects.filter(
                    exchange=exchange, client_order_id=data.get("clientOrderId"),
                    intent__source=IntentSource.EMERGENCY).exists():
                continue  # our own flatten orders
            try:
                gateway.cancel_order(data.get("id") or "", data.get("symbol"))
            except errors.OrderNotFound:
                pass
            except errors.ExchangeError as exc:
                problems.append(f"cancel {data.get('id')}: {exc}")
    except errors.ExchangeError as exc:
        problems.append(f"listing open orders: {exc}")
    closing = 0
    if flatten:
        for pos in Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN).select_related("symbol"):
            try:
                intent = exit_intent(pos, reason="emergency_stop", key_suffix=f"emergency:{event_id}",
                                     source=IntentSource.EMERGENCY, trace_id=trace_id)
                if intent is not None:
                    intent_process(intent.pk, intent=intent)
                    closing += 1
            except Exception as exc:
                problems.append(f"close {pos.symbol.symbol}: {type(exc).__name__}: {exc}")
    left_orders = Order.objects.filter(exchange=exchange, status__in=[
        OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN]).exclude(
        intent__source=IntentSource.EMERGENCY).count()
    left_positions = Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN).count() if flatten else 0
    done = not problems and left_orders == 0 and left_positions == 0
    GovernorState.objects.filter(pk=1).update(flatten_pending=not done)
    if done:
        log.critical("emergency flatten done", positions_closing=closing, flatten=flatten)
    else:
        log.error("emergency flatten incomplete; the sweep retries", open_orders=left_orders,
                  open_positions=left_positions, problems=problems[:10])
    return {"positions_closing": closing, "open_orders_left": left_orders, "open_positions_left": left_positions,
            "problems": problems, "done": done}


def _isolated(fn, arg) -> None:
    """One intent's failure must not stop the others (the next sweep tries it again)."""
    try:
        fn(arg)
    except Exception as exc:
        log.warning("sweep item failed; retried on the next sweep", item=arg, error=f"{type(exc).__name__}: {exc}")


def sweep() -> dict:
    """Beat fallback: process PENDING intents whose inline processing was lost, advance WORKING
    intents whose next action is due."""
    now = timezone.now()
    exchange = exchange_id()
    pending = list(ExecutionIntent.objects.filter(
        exchange=exchange, status=IntentStatus.PENDING, created_at__lte=now - timedelta(seconds=PENDING_GRACE_SECONDS),
    ).values_list("pk", flat=True)[:SWEEP_BATCH])
    due = list(ExecutionIntent.objects.filter(exchange=exchange, status=IntentStatus.WORKING,
                                              next_action_at__lte=now).values_list("pk", flat=True)[:SWEEP_BATCH])
    for pk in pending:
        _isolated(intent_process, pk)
    for pk in due:
        _isolated(intent_advance, pk)
    if flatten_pending():
        _isolated(lambda _: emergency_flatten_pending(), None)
    return {"pending": len(pending), "advanced": len(due)}




