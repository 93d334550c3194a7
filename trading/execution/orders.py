"""Orders on the exchange: record first, send once, never resend blindly, apply what comes back.

The protocol (every step survives a crash at any point):
1. The Order row exists, with its deterministic clientOrderId, before anything is sent
   (status `pending`). A second attempt to place the same intent slice finds this row.
2. Before sending, the submit counter is bumped and committed. A row with attempts > 0 and
   still `pending` may have reached the exchange: it is looked up by clientOrderId first.
3. create_order. An answer is applied (status, fills, position) in one transaction.
   - OrderOutcomeUnknown (timeout, 5xx, garbled answer): look the order up by clientOrderId;
     found -> applied; not found -> resent ONCE with the same id; still unknown -> `unknown`,
     for reconciliation to settle. Never a blind resend.
   - RateLimitExceeded: wait Retry-After (or backoff with jitter) when short, else the task
     retries later (ExecutionRetry); nothing was placed.
   - InsufficientFunds / InvalidOrder / BadSymbol / AuthenticationError: `rejected`, with the
     exchange's reason; not retried.
4. No order leaves a process before that process's first reconciliation succeeded.
"""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.decimals import to_decimal_or_none
from core.enums import ExecutionStatus, ExecutionStrategy
from qtweb.events import EventType
from qtweb.events.bus import publish, publish_many
from qtweb.faults import kill_point
from qtweb.health.status import report_module
from qtweb.logging import get_logger
from qtweb.queues import Service
from trading.exchanges import errors
from trading.exchanges.account import MAX_INLINE_WAIT_SECONDS, execution_gateway
from trading.execution import planning
from trading.execution.snapshot import account_snapshot_refresh
from trading.models import MarketType, Order, OrderStatus
from trading.positions.services import position_apply_fill

log = get_logger(__name__)

ZERO = Decimal("0")
RESENDS_AFTER_NOT_FOUND = 1


class ExecutionRetry(Exception):
    """Recoverable: try again after `delay_seconds` (the task layer owns the retry)."""

    def __init__(self, message: str, delay_seconds: float = 1.0):
        self.delay_seconds = delay_seconds
        super().__init__(message)


# --- the first-reconciliation gate ------------------------------------------------------

_reconciled = threading.Event()


def ensure_reconciled() -> None:
    """Run this process's first reconciliation if it has not succeeded yet; raise
    ExecutionRetry if it fails (no order leaves this process until it succeeds)."""
    if _reconciled.is_set():
        return
    from trading.execution.reconciliation import reconcile

    run = reconcile(reason="first_order")
    if not run.ok:
        raise ExecutionRetry(f"no order placed: reconciliation has not succeeded ({run.error or 'mismatch'})", 5.0)


def mark_reconciled() -> None:
    _reconciled.set()


def reset_reconciled() -> None:  # tests
    _reconciled.clear()


def forget_exchange_state() -> None:
    """After a gateway reload: leverage must be set again, reconciliation must run again."""
    _leverage_set.clear()
    _reconciled.clear()


# --- applying the exchange's answer ---------------------------------------------------------

_STATUS = {"open": OrderStatus.OPEN, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELLED,
           "cancelled": OrderStatus.CANCELLED, "expired": OrderStatus.CANCELLED, "rejected": OrderStatus.REJECTED}


def _dec(value) -> Decimal | None:
    try:
        return to_decimal_or_none(value, "value")
    except ValueError as exc:
        raise errors.BadResponse(f"a bad number in the exchange's order: {exc}") from None


STABLE_QUOTES = ("USDT", "USDC", "USD", "BUSD", "FDUSD")


def _fee_usd(data: dict, symbol, price: Decimal | None, exchange: str = "") -> Decimal:
    """The order's fees in USD: quote/stablecoin fees as they are, base-currency fees at the fill
    price, another currency (BNB, ...) at its own reference price (0 with a warning if unknown)."""
    fees = data.get("fees") or ([data["fee"]] if data.get("fee") else [])
    total = ZERO
    for fee in fees:
        cost = _dec(fee.get("cost")) or ZERO
        currency = fee.get("currency")
        if not cost:
            continue
        if currency in (None, symbol.quote, *STABLE_QUOTES):
            total += cost
        elif currency == symbol.base and price:
            total += cost * price
        else:
            from trading.marketdata.reference import reference_price

            rate = None
            for pair in (f"{currency}/{symbol.quote}", f"{currency}/{symbol.quote}:{symbol.quote}"):
                try:
                    rate = reference_price(exchange or symbol.exchange, pair)[0]
                except errors.BadSymbol:  # the exchange does not list that pair
                    rate = None
                if rate:
                    break
            if rate:
                total += cost * rate
            else:
                log.warning("fee in a currency without a price: not counted in USD", currency=currency,
                            cost=str(cost), order_id=data.get("id"))
    return total


def _order_datetime(data: dict) -> datetime:
    ts = data.get("lastTradeTimestamp") or data.get("timestamp")
    return datetime.fromtimestamp(ts / 1000, UTC) if ts else timezone.now()


def order_apply(order: Order, data: dict, *, publish_result: bool = True, answered_at=None) -> Order:
    """Apply the exchange's view of `order` (a ccxt order) atomically: new fills, position,
    status, and execution.result when the order reaches a final state. `answered_at`: when the
    exchange's answer arrived (the order's acknowledgement time; default now)."""
    answered_at = answered_at or timezone.now()
    status = _STATUS.get(str(data.get("status") or "").lower())
    if status is None:
        raise errors.BadResponse(f"order {order.client_order_id}: unknown status {data.get('status')!r}")
    filled = _dec(data.get("filled")) or ZERO
    average = _dec(data.get("average"))
    if filled < 0 or filled > order.amount * Decimal("1.000001"):
        raise errors.BadResponse(f"order {order.client_order_id}: filled {filled} outside 0..{order.amount}")
    events: list = []  # position and execution events, published together at the end
    with transaction.atomic():
        o = Order.objects.select_for_update(of=("self",)).select_related("symbol", "intent").get(pk=order.pk)
        was_final = o.status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)
        delta = filled - o.filled
        fee_total = _fee_usd(data, o.symbol, average, o.exchange)
        if delta > 0:
            new_cost = (average or ZERO) * filled
            old_cost = (o.average_price or ZERO) * o.filled
            price = (new_cost - old_cost) / delta if average else (_dec(data.get("price")) or ZERO)
            if price <= 0:
                raise errors.BadResponse(f"order {o.client_order_id}: filled {delta} with no usable price")
            fee_delta = max(ZERO, fee_total - o.fee_usd)
            from trading.models import Fill

            trade_id = f"{data.get('id') or o.client_order_id}:{filled}"
            Fill.objects.create(order=o, exchange=o.exchange, trade_id=trade_id, price=price, amount=delta,
                                fee_usd=fee_delta, timestamp=_order_datetime(data), trace_id=o.trace_id)
            position_apply_fill(order=o, amount=delta, price=price, fee_usd=fee_delta, now=_order_datetime(data),
                                events=events)
            o.filled = filled
            o.average_price = average or price
            o.fee_usd = max(o.fee_usd, fee_total)
        if status == OrderStatus.OPEN and o.filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        if status == OrderStatus.CANCELLED and o.filled >= o.amount:
            status = OrderStatus.FILLED
        o.status = status
        o.exchange_order_id = str(data.get("id") or o.exchange_order_id or "")
        if o.acknowledged_at is None:
            o.acknowledged_at = answered_at
        if status == OrderStatus.REJECTED and not o.status_reason:
            o.status_reason = str((data.get("info") or {}).get("reason") or "rejected by the exchange")[:2000]
        o.save()
        final = status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)
        if final and not was_final and publish_result:
            events.insert(0, _result_event(o))
        if events:
            publish_many(events, trace_id=o.trace_id or None)
        if delta > 0:  # the account changed: the inference worker sizes from its snapshot
            transaction.on_commit(lambda: account_snapshot_refresh(reason="fill"))
    return o


def _publish_result(o: Order) -> None:
    publish(*_result_event(o), trace_id=o.trace_id or None)


def _result_event(o: Order) -> tuple:
    intent = o.intent
    arrival = intent.arrival_price if intent is not None else None
    slippage = None
    if arrival and o.average_price and o.filled > 0:
        slippage = float(planning.slippage_pct(o.side, arrival, o.average_price))
    status = {OrderStatus.FILLED: ExecutionStatus.FILLED, OrderStatus.CANCELLED: ExecutionStatus.CANCELLED,
              OrderStatus.REJECTED: ExecutionStatus.REJECTED,
              OrderStatus.UNKNOWN: ExecutionStatus.UNKNOWN}.get(o.status, ExecutionStatus.OPEN)
    if status == ExecutionStatus.CANCELLED and o.filled > 0:
        status = ExecutionStatus.PARTIALLY_FILLED
    return (EventType.EXECUTION_RESULT, {
        "client_order_id": o.client_order_id, "exchange_order_id": o.exchange_order_id or None,
        "symbol": o.symbol.symbol, "side": o.side, "status": status, "requested_amount": o.amount,
        "filled_amount": o.filled, "average_price": o.average_price if o.filled > 0 else None,
        "filled_size_usd": (o.filled * (o.average_price or ZERO)).quantize(Decimal("0.01")),
        "leverage": o.leverage, "slippage_pct": round(slippage, 6) if slippage is not None else None,
        "fee_usd": o.fee_usd, "strategy": o.strategy or ExecutionStrategy.MARKET,
        "intent_key": intent.intent_key if intent is not None else "", "intent_complete": False,
        "reason": o.status_reason[:500],
    })


def order_reject(order: Order, reason: str) -> Order:
    with transaction.atomic():
        o = Order.objects.select_for_update(of=("self",)).select_related("symbol", "intent").get(pk=order.pk)
        if o.status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED):
            return o
        o.status = OrderStatus.REJECTED
        o.status_reason = reason[:2000]
        o.save(update_fields=["status", "status_reason", "updated_at"])
        _publish_result(o)
    log.warning("order rejected", client_order_id=o.client_order_id, reason=reason)
    return o


def _mark_unknown(order: Order, reason: str) -> Order:
    Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_SUBMIT).update(
        status=OrderStatus.UNKNOWN, status_reason=reason[:2000], updated_at=timezone.now())
    order.refresh_from_db()
    log.error("order outcome unknown: reconciliation will settle it", client_order_id=order.client_order_id,
              reason=reason)
    return order


# --- sending ----------------------------------------------------------------------------------


def order_lookup(order: Order, gateway=None) -> dict | None:
    """The exchange's view of the order by its clientOrderId; None if the exchange has no such
    order. Network errors propagate (the caller cannot conclude anything)."""
    gateway = gateway or execution_gateway()
    try:
        return gateway.fetch_order("", order.symbol.symbol, {"clientOrderId": order.client_order_id})
    except errors.OrderNotFound:
        return None


_leverage_set: dict[tuple[str, str], int] = {}


def _ensure_leverage(gateway, order: Order) -> None:
    if order.symbol.market_type == MarketType.SPOT or order.reduce_only:
        return
    key = (gateway.id, order.symbol.symbol)
    if _leverage_set.get(key) == order.leverage:
        return
    gateway.set_leverage(order.leverage, order.symbol.symbol)
    _leverage_set[key] = order.leverage


def _report_executor(status: str, reason: str, **details) -> None:
    """The executor is the exec-risk service's `executor` module in the health graph."""
    report_module(Service.EXEC_RISK.value, "executor", status, reason, **details)


def order_submit(order: Order, *, gateway=None, sleep=time.sleep, fresh: bool = False) -> Order:
    """Send `order` at most once per outcome (see the module docstring). `fresh`: the caller
    just created the row (nothing else can have touched it yet). The outcome is reported as the
    `executor` module's health: placed, or the exchange's error."""
    cid = order.client_order_id
    try:
        placed = _order_submit(order, gateway=gateway, sleep=sleep, fresh=fresh)
    except ExecutionRetry as exc:
        _report_executor("DEGRADED", f"order {cid} not placed yet: {exc}", client_order_id=cid)
        raise
    except Exception as exc:
        _report_executor("DEGRADED", f"order {cid} failed: {type(exc).__name__}: {exc}", client_order_id=cid)
        raise
    if placed.status in (OrderStatus.REJECTED, OrderStatus.UNKNOWN):
        _report_executor("DEGRADED", f"order {cid} {placed.status}: {placed.status_reason}", client_order_id=cid)
    elif placed.status != OrderStatus.PENDING_SUBMIT:
        _report_executor("HEALTHY", f"last order {cid} placed ({placed.status})", client_order_id=cid)
    return placed


def _order_submit(order: Order, *, gateway, sleep, fresh: bool) -> Order:
    ensure_reconciled()
    gateway = gateway or execution_gateway()
    if not fresh:
        order.refresh_from_db(fields=["status", "submit_attempts", "exchange_order_id", "filled", "average_price",
                                      "fee_usd", "status_reason", "acknowledged_at"])
    if order.status != OrderStatus.PENDING_SUBMIT:
        return order
    if order.submit_attempts > 0:  # a previous attempt may have reached the exchange
        found = order_lookup(order, gateway)
        if found is not None:
            log.info("order found by clientOrderId, not resent", client_order_id=order.client_order_id)
            return order_apply(order, found)
    from risk.services.policy import policy_get

    policy = policy_get()
    resends_left = RESENDS_AFTER_NOT_FOUND
    attempt = 0
    while True:
        attempt += 1
        try:
            _ensure_leverage(gateway, order)
        except errors.RateLimitExceeded as err:
            _wait_or_retry(err, attempt, policy, sleep)
            continue
        except errors.ExchangeError as err:
            if err.recoverable and attempt < policy.retry_attempts:
                sleep(planning.retry_delay(attempt, base_seconds=float(policy.retry_delay_seconds),
                                           cap_seconds=MAX_INLINE_WAIT_SECONDS, retry_after_seconds=None))
                continue
            if err.recoverable:
                raise ExecutionRetry(f"set_leverage failed: {err}", float(policy.retry_delay_seconds)) from err
            return order_reject(order, f"set_leverage {order.leverage}x refused: {err}")
        Order.objects.filter(pk=order.pk).update(submit_attempts=F("submit_attempts") + 1)
        params = {"clientOrderId": order.client_order_id}
        # reduceOnly is a derivatives flag (a spot exchange refuses it): a spot exit is a plain
        # sell of what is held, and the intent's reduce_only still governs risk and the mode.
        if order.reduce_only and order.symbol.market_type != MarketType.SPOT:
            params["reduceOnly"] = True
        try:
            data = gateway.create_order(order.symbol.symbol, order.type, order.side, float(order.amount),
                                        float(order.price) if order.price is not None else None, params)
        except errors.OrderOutcomeUnknown as err:
            # An exchange may not list an order the moment it accepted it: wait a little first.
            sleep(_lookup_delay(attempt, policy))
            try:
                found = order_lookup(order, gateway)
            except errors.ExchangeError as lookup_err:
                return _mark_unknown(order, f"create_order: {err}; lookup by clientOrderId failed: {lookup_err}")
            if found is not None:
                log.warning("create_order timed out but the order exists: not resent",
                            client_order_id=order.client_order_id)
                return order_apply(order, found)
            if resends_left > 0:
                resends_left -= 1
                log.warning("create_order timed out and the order does not exist: resending once with the same id",
                            client_order_id=order.client_order_id)
                continue
            return _mark_unknown(order, f"create_order outcome unknown twice: {err}")
        except errors.RateLimitExceeded as err:
            _wait_or_retry(err, attempt, policy, sleep)
            continue
        except errors.DuplicateClientOrderId as err:
            # The exchange already has an order with this id: the earlier send reached it. It is
            # ours; find it (never mark it rejected, never send a new id).
            return _settle_existing(order, gateway, sleep, policy, f"{err}")
        except (errors.InsufficientFunds, errors.InvalidOrder, errors.BadSymbol, errors.AuthenticationError,
                errors.NotSupported) as err:
            return order_reject(order, f"{type(err).__name__}: {err}")
        except errors.NetworkError as err:  # a backend that does not map create_order timeouts itself
            found = None
            sleep(_lookup_delay(attempt, policy))
            try:
                found = order_lookup(order, gateway)
            except errors.ExchangeError:
                return _mark_unknown(order, f"create_order: {err}")
            if found is not None:
                return order_apply(order, found)
            if attempt < policy.retry_attempts:
                continue
            return _mark_unknown(order, f"create_order kept failing: {err}")
        except errors.ExchangeError as err:
            return order_reject(order, f"{type(err).__name__}: {err}")
        answered_at = timezone.now()
        _fault_point("after_send")
        return order_apply(order, data, answered_at=answered_at)


def _lookup_delay(attempt: int, policy) -> float:
    """Backoff with jitter before looking up (or resending) an order whose answer was lost."""
    return planning.retry_delay(attempt, base_seconds=float(policy.retry_delay_seconds) / 4,
                                cap_seconds=MAX_INLINE_WAIT_SECONDS, retry_after_seconds=None)


def _settle_existing(order: Order, gateway, sleep, policy, why: str) -> Order:
    """The exchange says the order exists (duplicate clientOrderId): look it up a few times with
    backoff; if it still cannot be read, leave it `unknown` for reconciliation."""
    for attempt in range(1, max(1, policy.retry_attempts) + 1):
        sleep(_lookup_delay(attempt, policy))
        try:
            found = order_lookup(order, gateway)
        except errors.ExchangeError as exc:
            why = f"{why}; lookup failed: {exc}"
            continue
        if found is not None:
            log.warning("duplicate clientOrderId: the earlier send reached the exchange; not resent",
                        client_order_id=order.client_order_id)
            return order_apply(order, found)
    return _mark_unknown(order, f"the exchange has this clientOrderId but it could not be read: {why}")


def _wait_or_retry(err: errors.ExchangeError, attempt: int, policy, sleep) -> None:
    delay = planning.retry_delay(attempt, base_seconds=float(policy.retry_delay_seconds),
                                 cap_seconds=max(MAX_INLINE_WAIT_SECONDS, float(policy.retry_delay_seconds) * 8),
                                 retry_after_seconds=err.retry_after_seconds)
    if attempt >= policy.retry_attempts or delay > MAX_INLINE_WAIT_SECONDS:
        raise ExecutionRetry(f"rate limited by the exchange ({err}); retry in {delay:.1f}s", delay) from err
    log.warning("rate limited: waiting before the next try", delay_seconds=round(delay, 3), attempt=attempt)
    sleep(delay)


def _fault_point(name: str) -> None:
    """A crash-test kill point (qtweb/faults.py): after the exchange accepted the order and
    before it is stored."""
    kill_point("exec", name, enabled=getattr(settings, "EXECUTION_FAULTS_ENABLED", False))

