"""The emergency flatten: cancel every open order, close every position (emergency.stop).

Risk owns the request (HALTED, and a pending flatten on record); this module does the work and
reports back through risk's flatten_report(), so the request stays pending, and the beat sweep
runs this again, until nothing is left open.
"""
from __future__ import annotations

from core.enums import CloseReason, IntentSource, IntentStatus, OrderStatus, PositionStatus
from qtweb.logging import get_logger
from risk.services.governor import flatten_report, flatten_request_pending
from trading.exchanges import errors
from trading.exchanges.account import exchange_id, execution_gateway
from trading.execution import planning
from trading.execution.services.intents import intent_finish, intent_process, orders_cancel
from trading.execution.services.sources import exit_intent
from trading.models import OPEN_ORDER_STATUSES, ExecutionIntent, Order, Position

log = get_logger(__name__)

# Orders a cancel can still act on (an UNKNOWN one is left to reconciliation, but counts as open).
LIVE_ORDER_STATUSES = (OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


def emergency_flatten_pending() -> dict | None:
    """The beat sweep's retry of an emergency stop that did not finish (exchange errors, a crash)."""
    request = flatten_request_pending()
    if request is None:
        return None
    return emergency_flatten(event_id=request.event_id, flatten=request.flatten_positions)


def emergency_flatten(*, event_id: str, flatten: bool, trace_id: str | None = None) -> dict:
    """Cancel every open order (ours and any the exchange holds), then close every position.

    Each order and position is handled on its own (one failure does not stop the rest). Until
    nothing is left open, the governor state keeps `flatten_pending` and the beat sweep runs
    this again; running it twice is harmless."""
    gateway = execution_gateway()
    exchange = exchange_id()
    problems: list[str] = []
    for intent in ExecutionIntent.objects.filter(exchange=exchange, status=IntentStatus.WORKING).exclude(
            source=IntentSource.EMERGENCY).select_related("symbol"):
        try:
            intent_finish(intent, IntentStatus.STOPPED, "stopped by the emergency stop")
        except Exception as exc:
            problems.append(f"intent {intent.intent_key}: {exc}")
    open_orders = list(Order.objects.filter(exchange=exchange, status__in=LIVE_ORDER_STATUSES).exclude(
        intent__source=IntentSource.EMERGENCY).select_related("symbol", "intent"))
    for order in open_orders:
        try:
            orders_cancel([order], gateway)
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
                intent = exit_intent(pos, reason=CloseReason.EMERGENCY_STOP, key_suffix=f"emergency:{event_id}",
                                     source=IntentSource.EMERGENCY, trace_id=trace_id)
                if intent is not None:
                    intent_process(intent.pk, intent=intent)
                    closing += 1
            except Exception as exc:
                problems.append(f"close {pos.symbol.symbol}: {type(exc).__name__}: {exc}")
    left_orders = Order.objects.filter(exchange=exchange, status__in=OPEN_ORDER_STATUSES).exclude(
        intent__source=IntentSource.EMERGENCY).count()
    left_positions = Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN).count() if flatten else 0
    done = not problems and left_orders == 0 and left_positions == 0
    flatten_report(done=done)
    if done:
        log.critical("emergency flatten done", positions_closing=closing, flatten=flatten)
    else:
        log.error("emergency flatten incomplete; the sweep retries", open_orders=left_orders,
                  open_positions=left_positions, problems=problems[:10])
    return {"positions_closing": closing, "open_orders_left": left_orders, "open_positions_left": left_positions,
            "problems": problems, "done": done}
