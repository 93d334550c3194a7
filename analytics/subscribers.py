"""Event consumers of the analytics-os service."""
from __future__ import annotations

import logging

from qtweb.events import ALL_EVENTS, EventEnvelope, EventType, subscriber
from qtweb.logging import get_logger
from qtweb.queues import Queue

log = get_logger("analytics.audit")

# Events an operator must see in the audit stream at a raised level.
_WARNING_TYPES = {EventType.RISK_ALERT, EventType.SYSTEM_ALERT, EventType.SYSTEM_MODE_CHANGED}
_CRITICAL_TYPES = {EventType.EMERGENCY_STOP}
# Events too frequent to log at INFO (one per worker every 5 s, one per bar).
_QUIET_TYPES = {EventType.SERVICE_HEARTBEAT, EventType.MARKET_BAR, EventType.HEALTH_STATUS}


@subscriber(ALL_EVENTS, queue=Queue.OPS, name="analytics.observer")
def observe(event: EventEnvelope) -> None:
    """The audit stream: every event of every type, one JSON line with its trace id.

    `grep <trace_id> var/log/worker-ops.log` tells a flow's story in order even after the
    event rows are pruned. Later analytics features (alert rules, learning manager) hook in
    here or add their own subscriptions.
    """
    if event.type in _CRITICAL_TYPES:
        level = logging.CRITICAL
    elif event.type in _WARNING_TYPES:
        level = logging.WARNING
    elif event.type in _QUIET_TYPES:
        level = logging.DEBUG
    else:
        level = logging.INFO
    log.log(level, "event", event_type=event.type.value, event_id=str(event.event_id), source=event.source,
            trace_id=event.trace_id, event_timestamp=event.timestamp.isoformat(), payload=event.payload)


# The outcome store's bookkeeping runs on the ops queue, not the learning queue: a retraining job
# holds the learning worker for minutes, and a prediction recorded late is still recorded but a
# queue of them would be re-dispatched again and again meanwhile.
@subscriber(EventType.MODEL_PREDICTION, queue=Queue.OPS, name="analytics.learning.record_prediction")
def record_prediction(event: EventEnvelope) -> None:
    """Every model.prediction enters the outcome store, to be resolved once its horizon closes."""
    from analytics.learning.outcomes import record_prediction as record

    record(event)


@subscriber(EventType.POSITION_CLOSED, queue=Queue.OPS, name="analytics.learning.join_position")
def join_position(event: EventEnvelope) -> None:
    """A closed position's outcome joins the predictions of the signal that opened it."""
    from analytics.learning.outcomes import join_position as join

    join(event)


@subscriber(EventType.SYSTEM_ALERT, queue=Queue.OPS, name="analytics.notifications.fan_out")
def notify_operators(event: EventEnvelope) -> None:
    """Every alert, self-healing's included, to the operator channels whose minimum severity it
    reaches: one delivery row each, sent by its own task after this transaction commits."""
    from analytics.notifications.dispatch import fan_out

    fan_out(event)


@subscriber(EventType.POSITION_OPENED, queue=Queue.OPS, name="analytics.orchestration.after_position_opened")
def rebalance_after_open(event: EventEnvelope) -> None:
    """A new position may push its sector or the book over a cap: the balancer runs again, after this
    transaction commits (a pass another process holds is not waited for: the beat pass follows)."""
    from django.db import transaction

    from analytics.tasks import rebalance_task

    transaction.on_commit(lambda: rebalance_task.delay(trigger=f"position.opened {event.data().symbol}"))
