"""publish(), dispatch, consume, re-dispatch and pruning: the event backbone.

publish() validates, then writes the event and one delivery row per subscriber inside the
caller's transaction. Only after that transaction commits is one Celery task per subscriber
sent to the subscriber's queue, and the event pushed to the dashboard's Channels group. If
the broker is down or loses the message, the delivery row stays PENDING and
`redispatch_pending` (beat, and every worker at start) sends it again; the consume step makes
the duplicate harmless.

A delivery to a service switched off (<SERVICE>_ENABLED=false) is held: it is stored PENDING,
never sent (dispatch_count 0, `last_error` says why), skipped by the re-dispatch sweep, and
sent when the service's worker starts with the switch back on. One not taken within
DISABLED_SERVICE_RETENTION_HOURS (heartbeats: HEARTBEAT_RETENTION_HOURS) is given up by
prune_processed: FAILED, "expired: ...", and its event is pruned like a processed one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef

from qtweb import metrics, tracing
from qtweb.events import registry
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from qtweb.events.schemas import EventEnvelope, EventType, EventValidationError, build_envelope, parse_envelope
from qtweb.logging import get_logger
from qtweb.queues import Queue, queue_enabled, service_for_queue

log = get_logger(__name__)


class ConsumeOutcome(StrEnum):
    """What one delivery attempt came to (the deliver task's result and its metric label)."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"  # already DONE: a redelivery, skipped
    RETRIED = "retried"
    FAILED = "failed"  # refused, or raised on every try: the delivery is FAILED

# Deliveries per redispatch sweep: bounded so a huge backlog is sent over several sweeps
# instead of one task holding thousands of rows in memory.
REDISPATCH_BATCH = 2000

# `last_error` of a delivery held for a disabled service (cleared when it is sent), and of one
# given up after the retention (such a FAILED delivery no longer keeps its event from pruning).
HELD_PREFIX = "held: "
EXPIRED_PREFIX = "expired: "
# Rows per UPDATE/DELETE in the housekeeping below: one huge statement would hold locks and memory.
HOUSEKEEPING_BATCH = 5000

# Queues whose holding this process has already logged (once per process: the switches are
# read at start, so a process holds the same queues all its life).
_held_logged: set[str] = set()


def disabled_queues() -> frozenset[str]:
    """The queues of the services switched off, as this process's settings say."""
    return frozenset(q.value for q in Queue if not queue_enabled(q))


def _switch_text(queue: str) -> str:
    from qtweb.health.status import service_switch_name

    service = service_for_queue(queue)
    return f"{service.value} is switched off ({service_switch_name(service)}=false)"


def _note_held(queue: str, count: int, trace_id: str) -> None:
    if queue in _held_logged:
        return
    _held_logged.add(queue)
    log.warning("deliveries held in the outbox: their service is switched off; sent when it is enabled again",
                queue=queue, reason=_switch_text(queue), count=count, trace_id=trace_id)


def _now() -> datetime:
    return datetime.now(UTC)


def publish(
    event_type: EventType | str,
    payload: Any,
    *,
    source: str | None = None,
    trace_id: str | None = None,
    using: str = "default",
) -> EventEnvelope:
    """Validate and store an event in the caller's transaction; dispatch it on commit.

    Raises EventValidationError (naming the field) before anything is written.
    The trace id is, in order: the one given, the one active in this context, a new one.
    """
    return publish_many([(event_type, payload)], source=source, trace_id=trace_id, using=using)[0]


def publish_many(
    events: Iterable[tuple[EventType | str, Any]],
    *,
    source: str | None = None,
    trace_id: str | None = None,
    using: str = "default",
) -> list[EventEnvelope]:
    """publish() for a batch (e.g. one bar per symbol): one transaction, two bulk INSERTs.

    Every event is validated before anything is written; the first invalid one raises
    EventValidationError naming its position and field, and nothing of the batch is stored.
    """
    tid = trace_id or tracing.current_trace_id() or tracing.new_trace_id()
    src = source or settings.QT_SERVICE
    batch = list(events)
    envelopes = []
    for i, (event_type, payload) in enumerate(batch):
        try:
            envelopes.append(build_envelope(event_type, payload, trace_id=tid, source=src))
        except EventValidationError as exc:
            if len(batch) == 1:
                raise
            errors = [{**e, "field": f"[{i}].{e['field']}"} for e in exc.errors]
            raise EventValidationError(exc.event_type, errors) from None
    if not envelopes:
        return []
    held = disabled_queues()
    # A held delivery was never sent (dispatch_count 0) and says why until it is.
    held_fields = {q: {"dispatch_count": 0, "last_error": HELD_PREFIX + _switch_text(q)} for q in held}
    with transaction.atomic(using=using):
        rows = Event.objects.using(using).bulk_create(
            [
                Event(
                    event_id=e.event_id,
                    type=e.type.value,
                    version=e.version,
                    trace_id=e.trace_id,
                    source=e.source,
                    timestamp=e.timestamp,
                    payload=e.payload,
                )
                for e in envelopes
            ]
        )
        deliveries = EventDelivery.objects.using(using).bulk_create(
            [
                EventDelivery(
                    event=row, subscriber=s.name, queue=s.queue.value, created_at=e.timestamp,
                    dispatched_at=e.timestamp, **held_fields.get(s.queue.value, {}),
                )
                for e, row in zip(envelopes, rows, strict=True)
                for s in registry.subscribers_for(e.type)
            ]
        )
        routes: dict[uuid.UUID, list[tuple[int, str, str]]] = {e.event_id: [] for e in envelopes}
        held_counts: dict[str, int] = {}
        for d in deliveries:
            if d.queue in held:
                held_counts[d.queue] = held_counts.get(d.queue, 0) + 1
            else:
                routes[d.event_id].append((d.pk, d.subscriber, d.queue))
        for queue, count in held_counts.items():
            _note_held(queue, count, tid)
        transaction.on_commit(lambda: _after_commit(envelopes, routes), using=using)
    return envelopes


def _after_commit(envelopes: list[EventEnvelope], routes: dict[uuid.UUID, list[tuple[int, str, str]]]) -> None:
    from qtweb.events.push import push_to_dashboard

    wires = []
    for envelope in envelopes:
        metrics.EVENTS_PUBLISHED.labels(envelope.type.value).inc()
        wires.append(envelope.model_dump(mode="json"))
    # Deliveries to the ops queue (the audit observer, alerting, the dashboard's backers) go
    # last: the consumers that act on an event (execution, inference, learning) should not
    # wait behind an audit log's send.
    for last in (False, True):
        for envelope, wire in zip(envelopes, wires, strict=True):
            for delivery_id, subscriber, queue in routes[envelope.event_id]:
                if (queue == Queue.OPS.value) == last:
                    send_delivery(delivery_id, subscriber, queue, wire)
    for wire in wires:
        push_to_dashboard(wire)


def send_delivery(delivery_id: int, subscriber: str, queue: str, wire: dict) -> bool:
    """Send one delivery task. False if the broker refused: the outbox keeps it PENDING."""
    from qtweb.events.tasks import deliver_event

    try:
        deliver_event.apply_async(
            args=(delivery_id, subscriber, wire),
            queue=queue,
            headers={tracing.TRACE_HEADER: wire["trace_id"]},
            # Celery would saferepr() the whole envelope for its logs: a fifth of the send cost.
            argsrepr=f"({delivery_id}, {subscriber!r}, <{wire['type']} {wire['event_id']}>)",
            kwargsrepr="{}",
        )
        return True
    except Exception as exc:  # broker unreachable: never lose the event, never crash the publisher
        metrics.EVENTS_DISPATCH_ERRORS.labels(queue).inc()
        log.warning(
            "event dispatch failed; the outbox will re-dispatch",
            delivery_id=delivery_id,
            subscriber=subscriber,
            queue=queue,
            error=repr(exc),
            trace_id=wire["trace_id"],
        )
        return False


# --- consuming ---------------------------------------------------------------------------


class UnknownSubscriber(LookupError):
    """A delivery names a subscriber this process does not have (deploy mismatch): retried."""


def consume(delivery_id: int, subscriber: str, wire: dict, *, worker: str) -> str:
    """Run the subscriber's handler once for this delivery. Returns 'handled' or 'duplicate'.

    The handler runs inside the transaction that flips the delivery PENDING -> DONE: if the
    handler raises, the flip rolls back with the handler's own writes. A concurrent duplicate
    blocks on the row lock and then finds the delivery DONE.
    """
    sub = registry.get_subscription(subscriber)
    if sub is None:
        raise UnknownSubscriber(f"no subscriber named {subscriber!r} in this process")
    envelope = parse_envelope(wire)
    with transaction.atomic():
        claimed = EventDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.DONE, processed_at=_now(), processed_by=worker, attempts=F("attempts") + 1
        )
        if not claimed:
            return ConsumeOutcome.DUPLICATE
        sub.handler(envelope)
    return ConsumeOutcome.HANDLED


def record_failure(delivery_id: int, error: BaseException, *, final: bool) -> None:
    """Count a failed attempt; after the last one the delivery is FAILED (visible in admin).

    A retry is a fresh dispatch: `dispatched_at` moves on, so the outbox sweep does not take a
    delivery waiting for its next try for a lost one, however many retries are configured.
    """
    fields: dict[str, Any] = {"attempts": F("attempts") + 1, "last_error": f"{type(error).__name__}: {error}"[:4000]}
    if final:
        fields["status"] = DeliveryStatus.FAILED
    else:
        fields["dispatched_at"] = _now()
    EventDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(**fields)


# --- outbox recovery ---------------------------------------------------------------------


def redispatch_pending(
    *, queues: Iterable[str] | None = None, older_than_seconds: float | None = None, reason: str = "sweep"
) -> int:
    """Re-send deliveries still PENDING after `older_than_seconds` since their last dispatch.

    Used by the beat sweep (threshold EVENT_REDISPATCH_AFTER_SECONDS, longer than the longest
    retry backoff) and by each worker at start for its own queues (threshold 0: whatever the
    broker held for a dead worker may be gone). Duplicates are harmless: see consume().
    """
    if older_than_seconds is None:
        older_than_seconds = settings.EVENT_REDISPATCH_AFTER_SECONDS
    cutoff = _now() - timedelta(seconds=older_than_seconds)
    qs = EventDelivery.objects.filter(status=DeliveryStatus.PENDING, dispatched_at__lte=cutoff)
    if queues is not None:
        qs = qs.filter(queue__in=list(queues))
    held = disabled_queues()
    if held:  # held for a switched-off service: sending them would only pile copies up in Redis
        qs = qs.exclude(queue__in=list(held))
    rows = list(qs.select_related("event").order_by("dispatched_at")[:REDISPATCH_BATCH])
    sent_ids, released_ids = [], []
    for d in rows:
        wire = d.event.as_envelope()
        with tracing.trace(d.event.trace_id):
            if send_delivery(d.pk, d.subscriber, d.queue, wire):
                sent_ids.append(d.pk)
                if d.last_error.startswith(HELD_PREFIX):
                    released_ids.append(d.pk)
                metrics.EVENTS_REDISPATCHED.labels(d.queue, reason).inc()
    if sent_ids:
        EventDelivery.objects.filter(pk__in=sent_ids).update(
            dispatched_at=_now(), dispatch_count=F("dispatch_count") + 1
        )
        log.info("re-dispatched pending deliveries", count=len(sent_ids), reason=reason)
    if released_ids:
        EventDelivery.objects.filter(pk__in=released_ids, last_error__startswith=HELD_PREFIX).update(last_error="")
        log.info("sent deliveries held while their service was switched off", count=len(released_ids),
                 reason=reason)
    return len(sent_ids)


def retry_failed(delivery_ids: Iterable[int]) -> int:
    """Operator action: put FAILED deliveries back to PENDING and send them again."""
    ids = list(delivery_ids)
    n = EventDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, dispatched_at=_now() - timedelta(days=1), last_error=""
    )
    if n:
        transaction.on_commit(lambda: redispatch_pending(older_than_seconds=3600, reason="operator_retry"))
    return n


def expire_held(*, retention_hours: float | None = None, heartbeat_retention_hours: float | None = None) -> int:
    """Give up deliveries held for a disabled service longer than its retention: FAILED, with
    `last_error` "expired: <why>" (an operator may still retry them while the event exists).
    Heartbeats wait HEARTBEAT_RETENTION_HOURS at most: a late heartbeat tells nothing."""
    held = disabled_queues()
    if not held:
        return 0
    retention = settings.DISABLED_SERVICE_RETENTION_HOURS if retention_hours is None else retention_hours
    hb_retention = min(retention, settings.HEARTBEAT_RETENTION_HOURS if heartbeat_retention_hours is None
                       else heartbeat_retention_hours)
    expired = 0
    for queue in sorted(held):
        for heartbeats, hours in ((False, retention), (True, hb_retention)):
            qs = EventDelivery.objects.filter(status=DeliveryStatus.PENDING, queue=queue,
                                              created_at__lt=_now() - timedelta(hours=hours))
            hb = {"event__type": EventType.SERVICE_HEARTBEAT.value}
            qs = qs.filter(**hb) if heartbeats else qs.exclude(**hb)
            why = f"{EXPIRED_PREFIX}{_switch_text(queue)} longer than the {hours:g} h retention"[:4000]
            count = 0
            while True:
                ids = list(qs.values_list("pk", flat=True)[:HOUSEKEEPING_BATCH])
                if not ids:
                    break
                count += EventDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(
                    status=DeliveryStatus.FAILED, last_error=why)
            if count:
                log.warning("deliveries to a switched-off service expired", queue=queue, count=count,
                            heartbeats=heartbeats, retention_hours=hours)
            expired += count
    return expired


def prune_processed(*, retention_hours: float | None = None, heartbeat_retention_hours: float | None = None) -> int:
    """Expire what a disabled service did not take in time (expire_held), then delete events
    whose every delivery is DONE (or expired) and that are older than the retention.

    Events with a PENDING or FAILED delivery are kept whatever their age. Heartbeats have a
    shorter retention: they are many and only their latest value matters.
    """
    expire_held()
    retention = settings.EVENT_RETENTION_HOURS if retention_hours is None else retention_hours
    hb_retention = (
        settings.HEARTBEAT_RETENTION_HOURS if heartbeat_retention_hours is None else heartbeat_retention_hours
    )
    open_deliveries = (EventDelivery.objects.filter(event=OuterRef("pk")).exclude(status=DeliveryStatus.DONE)
                       .exclude(status=DeliveryStatus.FAILED, last_error__startswith=EXPIRED_PREFIX))
    deleted = 0
    for types, hours in (
        ({"exclude": [EventType.SERVICE_HEARTBEAT.value]}, retention),
        ({"include": [EventType.SERVICE_HEARTBEAT.value]}, hb_retention),
    ):
        qs = Event.objects.filter(timestamp__lt=_now() - timedelta(hours=hours)).filter(~Exists(open_deliveries))
        qs = qs.exclude(type__in=types["exclude"]) if "exclude" in types else qs.filter(type__in=types["include"])
        while True:  # in batches: one huge DELETE would hold locks and memory
            ids = list(qs.values_list("pk", flat=True)[:HOUSEKEEPING_BATCH])
            if not ids:
                break
            EventDelivery.objects.filter(event_id__in=ids).delete()
            n, _ = Event.objects.filter(pk__in=ids).delete()
            deleted += n
    if deleted:
        log.info("pruned processed events", deleted=deleted)
    return deleted


def events_for_trace(trace_id: str):
    return Event.objects.filter(trace_id=trace_id).order_by("timestamp", "event_id").prefetch_related("deliveries")


def wait_until_handled(event_id: uuid.UUID | str, timeout: float = 10.0, poll: float = 0.02) -> bool:
    """Block until every delivery of an event is DONE (for scripts, tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not EventDelivery.objects.filter(event_id=event_id).exclude(status=DeliveryStatus.DONE).exists():
            return True
        time.sleep(poll)
    return False
