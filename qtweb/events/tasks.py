"""The one Celery task that delivers an event to a subscriber, and the outbox housekeeping."""
from __future__ import annotations

from django.conf import settings

from qtweb import metrics
from qtweb.events import bus
from qtweb.events.bus import ConsumeOutcome
from qtweb.events.schemas import EventValidationError
from qtweb.logging import get_logger
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task

log = get_logger(__name__)

# The longest wait between two tries of a failing subscriber; kept below the outbox's
# EVENT_REDISPATCH_AFTER_SECONDS (each try refreshes dispatched_at, see bus.record_failure) so
# a retry in flight is not mistaken for a lost message.
MAX_RETRY_BACKOFF_SECONDS = 30.0


def retry_backoff_seconds(retries_done: int) -> float:
    return min(settings.EVENT_RETRY_BACKOFF_SECONDS * (2**retries_done), MAX_RETRY_BACKOFF_SECONDS)


# Declared on ops, the queue a delivery without one would take: bus.send_delivery always names
# the subscriber's queue, and acks_late/reject_on_worker_lost hold on every queue it goes to.
@queue_task(
    Queue.OPS,
    bind=True,
    name="qtweb.events.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # counted against settings.EVENT_MAX_RETRIES below
)
def deliver_event(self, delivery_id: int, subscriber: str, wire: dict) -> str:
    """Queue: the subscriber's (set per message by bus.send_delivery)."""
    event_type = wire.get("type", "?")
    try:
        outcome = bus.consume(delivery_id, subscriber, wire, worker=self.request.hostname or "")
    except EventValidationError as exc:
        # A malformed envelope will not improve with retries: fail it now, with the reason.
        bus.record_failure(delivery_id, exc, final=True)
        metrics.EVENTS_CONSUMED.labels(event_type, subscriber, ConsumeOutcome.FAILED).inc()
        log.error("event refused by consumer", delivery_id=delivery_id, subscriber=subscriber, error=str(exc))
        return ConsumeOutcome.FAILED
    except Exception as exc:
        retries_done = self.request.retries
        final = retries_done >= settings.EVENT_MAX_RETRIES
        bus.record_failure(delivery_id, exc, final=final)
        if final:
            metrics.EVENTS_CONSUMED.labels(event_type, subscriber, ConsumeOutcome.FAILED).inc()
            log.error("subscriber failed on every try; delivery marked FAILED", delivery_id=delivery_id,
                      subscriber=subscriber, attempts=retries_done + 1, error=repr(exc))
            return ConsumeOutcome.FAILED
        metrics.EVENTS_CONSUMED.labels(event_type, subscriber, ConsumeOutcome.RETRIED).inc()
        countdown = retry_backoff_seconds(retries_done)
        log.warning("subscriber raised; retrying", delivery_id=delivery_id, subscriber=subscriber,
                    attempt=retries_done + 1, retry_in_seconds=countdown, error=repr(exc))
        raise self.retry(exc=exc, countdown=countdown, max_retries=None) from None
    metrics.EVENTS_CONSUMED.labels(event_type, subscriber, outcome).inc()
    return outcome


@queue_task(Queue.OPS, name="qtweb.events.redispatch_pending", ignore_result=True)
def redispatch_pending_task() -> int:
    return bus.redispatch_pending(reason="sweep")


@queue_task(Queue.OPS, name="qtweb.events.prune_processed", ignore_result=True)
def prune_processed_task() -> int:
    return bus.prune_processed()
