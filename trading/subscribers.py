"""Event consumers of the exec-risk service (execution queue).

Each consumer runs inside the transaction that marks the delivery done: it only records the
intent there (idempotent by its key) and does the exchange work right after the commit, in
the same worker (transaction.on_commit), so no exchange call ever sits inside a database
transaction. If the worker dies in between, the beat sweep picks the PENDING intent up.
"""
from __future__ import annotations

from django.db import transaction

from core.enums import PositionStatus, Severity
from core.limits import SHORT_TEXT_MAX, TEXT_MAX
from qtweb.events import EventEnvelope, EventType, subscriber
from qtweb.logging import get_logger
from qtweb.queues import Queue

log = get_logger(__name__)


def _process_after_commit(intent) -> None:
    if intent is None:
        return
    from trading.execution.orders import ExecutionRetry
    from trading.execution.services import intent_process

    def run(pk=intent.pk, row=intent):
        try:
            intent_process(pk, intent=row)
        except ExecutionRetry as exc:
            from trading.tasks import process_intent

            process_intent.apply_async((pk,), countdown=exc.delay_seconds)
        except Exception:
            log.exception("intent processing failed; the sweep retries it", intent_id=pk)

    transaction.on_commit(run)


def _refuse_manual_order(event: EventEnvelope, exc: Exception) -> None:
    from qtweb.events.bus import publish

    coid = event.data().client_order_id
    publish(EventType.RISK_ALERT, {"severity": Severity.WARNING, "rule": "TRADE_BLOCKED",
                                   "message": f"manual order {coid} refused: {exc}"[:TEXT_MAX],
                                   "rejected": True,
                                   "reasons": [{"rule": "order", "message": str(exc)[:SHORT_TEXT_MAX]}]})


@subscriber(EventType.RL_DECISION, queue=Queue.EXECUTION, name="trading.execution.on_rl_decision")
def on_rl_decision(event: EventEnvelope) -> None:
    """Flow 1: rl.decision (with the signal it sized) -> validate -> execute."""
    from trading.execution.services import IntentError, intent_from_rl_decision

    try:
        intent = intent_from_rl_decision(event)
    except IntentError as exc:
        log.warning("rl.decision not tradable", error=str(exc), symbol=event.data().symbol,
                    version=event.version)
        return
    _process_after_commit(intent)


@subscriber(EventType.EXECUTION_REQUEST, queue=Queue.EXECUTION, name="trading.execution.on_request")
def on_execution_request(event: EventEnvelope) -> None:
    """A manual order: the same risk path as a signal."""
    from trading.execution.services import IntentError, intent_from_request

    try:
        intent = intent_from_request(event)
    except IntentError as exc:
        _refuse_manual_order(event, exc)
        return
    _process_after_commit(intent)


@subscriber(EventType.PORTFOLIO_BALANCE, queue=Queue.EXECUTION, name="trading.execution.on_portfolio_balance")
def on_portfolio_balance(event: EventEnvelope) -> None:
    """PBA directives become intents through the same risk path (trading/execution/services/sources.py)."""
    from trading.execution.services import IntentError, intents_from_portfolio_balance

    try:
        intents = intents_from_portfolio_balance(event)
    except IntentError as exc:  # refused whole, with its reasons: a retry would refuse it again
        from qtweb.events.bus import publish

        log.warning("portfolio balance refused", error=str(exc))
        reasons = [{"rule": "portfolio.balance", "message": str(exc)[:SHORT_TEXT_MAX]}]
        publish(EventType.RISK_ALERT, {"severity": Severity.WARNING, "rule": "TRADE_BLOCKED",
                                       "message": str(exc)[:TEXT_MAX], "rejected": True, "reasons": reasons},
                trace_id=event.trace_id)
        return
    for intent in intents:
        _process_after_commit(intent)


@subscriber(EventType.PROFIT_AMPLIFICATION, queue=Queue.EXECUTION, name="trading.execution.on_profit_amplification")
def on_profit_amplification(event: EventEnvelope) -> None:
    """PAL: add to a winner (risk-checked like any entry) or move its take-profit."""
    from trading.execution.services import IntentError, profit_amplification_apply

    try:
        intent = profit_amplification_apply(event)
    except IntentError as exc:
        log.warning("profit amplification refused", error=str(exc))
        return
    _process_after_commit(intent)


@subscriber(EventType.EMERGENCY_STOP, queue=Queue.EXECUTION, name="trading.execution.on_emergency_stop")
def on_emergency_stop(event: EventEnvelope) -> None:
    """Cancel every open order and flatten positions as the event says."""
    from trading.execution.services import emergency_flatten

    stop = event.data()
    transaction.on_commit(lambda: emergency_flatten(event_id=str(event.event_id), flatten=stop.flatten_positions,
                                                    trace_id=event.trace_id))


@subscriber(EventType.MARKET_BAR, queue=Queue.EXECUTION, name="trading.positions.on_bar")
def on_market_bar(event: EventEnvelope) -> None:
    """A new bar: update and check the positions on its symbol."""
    from trading.models import Position

    symbol = event.data().symbol
    if not Position.objects.filter(symbol__symbol=symbol, status=PositionStatus.OPEN).exists():
        return
    from trading.positions.monitor import monitor_once

    transaction.on_commit(lambda: monitor_once(symbols=[symbol]))


@subscriber(EventType.POSITION_CLOSED, queue=Queue.EXECUTION, name="risk.governor.on_position_closed")
def on_position_closed(event: EventEnvelope) -> None:
    """After each closed position: consecutive losses and drawdown are re-assessed."""
    from risk.services.governor import governor_check

    transaction.on_commit(lambda: governor_check(trigger="position_closed"))
