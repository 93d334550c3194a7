"""Alerts to operator channels: fan-out, sending, rate limit, retries, failure reports.

    system.alert ──(subscriber, ops)──> fan_out(envelope)
        one NotificationDelivery per channel whose minimum severity the alert reaches, written
        in the subscriber's transaction (before anything is sent), then one
        `analytics.notifications.send` task per channel on commit
    analytics.notifications.send(channel_id) ──> flush_channel(channel_id)
        sends what is due on that channel: one alert as one message, several as one batched
        message ("3 alerts: ..."); a failure waits for the next try (backoff), a channel over its
        rate limit waits for a free slot; nothing is dropped
    analytics.notifications.sweep (beat, every 10 s) ──> sweep()
        sends what is due whose task was lost, and syncs NOTIFY_CHANNELS

Channels are independent: each is flushed by its own task, with a bounded send time, and holds
no lock while it sends, so a channel that fails or hangs never holds back another channel's
delivery rows or messages. Delivery is at least once: a worker that dies after the channel
accepted a message but before the row says SENT sends it again after the lease.
"""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.db.models import F, Min
from django.utils import timezone

from analytics.models import DeliveryStatus, NotificationChannel, NotificationDelivery
from analytics.notifications import secrets
from analytics.notifications.channels import (
    SEVERITY_RANK,
    ChannelConfigError,
    accepts,
    is_failing,
    resolve_url,
    severity_rank,
    sync_env_channels,
)
from core.enums import Severity
from core.limits import TEXT_MAX, clip
from qtweb import tracing
from qtweb.events import EventEnvelope, EventType, publish
from qtweb.logging import get_logger
from qtweb.queues import Queue, Service

log = get_logger("analytics.notifications")

SEND_TASK = "analytics.notifications.send"
# The component of the alerts this module publishes about itself (a channel that keeps failing).
NOTIFICATIONS_COMPONENT = "notifications"

# Tries of one delivery before it is FAILED and reported: with the backoff below that is about
# ten minutes of a channel being down, long enough to ride out a restart of the service behind it.
MAX_ATTEMPTS = 6
RETRY_BASE_SECONDS = 5.0
RETRY_FACTOR = 3
RETRY_MAX_SECONDS = 600.0

RATE_WINDOW_SECONDS = 60.0
# One send, whole: Apprise's own socket timeouts (4 s connect, 4 s read unless the URL says
# ?cto=/?rto=) fit inside it, and a service that still has not answered is abandoned, so a
# hanging channel holds an ops worker process this long per attempt at most.
SEND_TIMEOUT_SECONDS = 10.0
# Deliveries being sent are held this long; a worker that died mid-send leaves them due again
# after it (the sweep picks them up). Longer than the send task's hard time limit.
LEASE_SECONDS = 60.0
# A batched message stays under 4096 characters, the smallest limit of the common chat services
# (Telegram); what does not fit goes in the next message.
BATCH_MAX = 50
BATCH_BODY_MAX_CHARS = 3500
BATCH_LINE_MAX_CHARS = 300


def backoff_seconds(attempts: int) -> float:
    """Wait after the `attempts`-th failed try: 5 s, 15 s, 45 s, 135 s, 405 s, then 10 min at most."""
    return min(RETRY_BASE_SECONDS * RETRY_FACTOR ** max(attempts - 1, 0), RETRY_MAX_SECONDS)


@dataclass(frozen=True)
class FlushResult:
    """What one flush of a channel did. outcome: sent, failed, waiting (a retry or a send in
    flight holds the channel; the due deliveries joined it), rate_limited, idle (nothing due),
    disabled, gone (no such channel)."""

    outcome: str
    deliveries: int = 0
    error: str = ""
    next_attempt_at: datetime | None = None


# --- the message ---------------------------------------------------------------------------

def alert_message(envelope: EventEnvelope) -> tuple[str, str, Severity]:
    """(title, body, severity) of a system.alert: the title names severity and component, the
    body the message, the service, the trace id, the event and its time."""
    alert = envelope.data()
    severity = Severity(alert.severity)
    title = clip(f"[{severity.value.upper()}] {alert.component}", TEXT_MAX)
    body = "\n".join([
        alert.message,
        f"service: {alert.service or envelope.source}",
        f"trace_id: {envelope.trace_id}",
        f"event: {envelope.event_id}",
        f"at: {envelope.timestamp.isoformat()}",
    ])
    return title, body, severity


def _line(d: NotificationDelivery) -> str:
    first = d.body.split("\n", 1)[0]
    line = f"{d.title} {d.created_at:%H:%M:%S}Z: {first}"
    if d.trace_id:
        line += f" (trace {d.trace_id})"
    return line if len(line) <= BATCH_LINE_MAX_CHARS else line[:BATCH_LINE_MAX_CHARS - 1] + "…"


def _fit(due: list[NotificationDelivery]) -> list[NotificationDelivery]:
    """The oldest due deliveries that fit one message (at least one)."""
    batch, size = [], 0
    for d in due:
        size += len(_line(d)) + 1
        if batch and size > BATCH_BODY_MAX_CHARS:
            break
        batch.append(d)
    return batch


def compose(batch: list[NotificationDelivery]) -> tuple[str, str, Severity]:
    """One delivery as it was written; several as one message titled "N alerts: ..."."""
    if len(batch) == 1:
        d = batch[0]
        return d.title, d.body, _severity(d.severity)
    counts = Counter(_severity(d.severity) for d in batch)
    by_rank = sorted(counts, key=lambda s: SEVERITY_RANK[s], reverse=True)
    title = f"{len(batch)} alerts: " + ", ".join(f"{counts[s]} {s.value}" for s in by_rank)
    body = "\n".join(_line(d) for d in batch)
    return title, body, by_rank[0]


def _severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        return Severity.WARNING


# --- fan-out -------------------------------------------------------------------------------

def fan_out(envelope: EventEnvelope) -> list[NotificationDelivery]:
    """Write one pending delivery of this system.alert per enabled channel whose minimum severity
    it reaches, and send them once the caller's transaction commits. Idempotent per event.

    An alert about the notifications themselves (a channel that keeps failing) goes only to
    channels that are not failing: never to the channel it is about, and never round a loop of
    failing channels reporting each other.
    """
    if envelope.type is not EventType.SYSTEM_ALERT:
        raise ValueError(f"fan_out takes system.alert events, not {envelope.type.value}")
    alert = envelope.data()
    sync_env_channels()
    title, body, severity = alert_message(envelope)
    channels = [c for c in NotificationChannel.objects.filter(enabled=True).order_by("name") if accepts(c, severity)]
    if alert.component == NOTIFICATIONS_COMPONENT:
        channels = [c for c in channels if not is_failing(c)]
    if not channels:
        return []
    now = timezone.now()
    rows = [NotificationDelivery(channel=c, event_id=envelope.event_id, severity=severity.value, title=title,
                                 body=body, next_attempt_at=now, created_at=now, trace_id=envelope.trace_id)
            for c in channels]
    NotificationDelivery.objects.bulk_create(rows, ignore_conflicts=True)  # a re-delivered event adds nothing
    for c in _healthy_first(channels):
        _wake(c.pk, trace_id=envelope.trace_id)
    log.info("alert queued for notification channels", event_id=str(envelope.event_id), severity=severity.value,
             component=alert.component, channels=[c.name for c in channels], trace_id=envelope.trace_id)
    return rows


def _healthy_first(channels) -> list[NotificationChannel]:
    """Channels that work are sent first: on a busy worker a failing one waits behind them."""
    return sorted(channels, key=lambda c: (is_failing(c), c.name))


def _wake(channel_id: int, *, delay_seconds: float = 0.0, trace_id: str | None = None) -> None:
    """Flush the channel after `delay_seconds`, once the current transaction commits. A broker
    that cannot be reached loses nothing: the rows stay pending and the sweep sends them."""
    headers = {tracing.TRACE_HEADER: trace_id} if trace_id else None

    def send() -> None:
        current_app.send_task(SEND_TASK, (channel_id,), queue=Queue.OPS.value,
                              countdown=max(0.0, delay_seconds), headers=headers)

    transaction.on_commit(send, robust=True)


# --- sending -------------------------------------------------------------------------------

def flush_channel(channel_id: int) -> FlushResult:
    """Send what is due on one channel: claim it (a short transaction), send (no transaction,
    no lock), record the outcome."""
    claimed = _claim(channel_id)
    if isinstance(claimed, FlushResult):
        return claimed
    channel, batch, lease_until = claimed
    title, body, severity = compose(batch)
    try:
        url = resolve_url(channel)
    except ChannelConfigError as exc:
        error = str(exc)
    else:
        error = send_message(url, title=title, body=body, severity=severity)
    if error is None:
        return _record_success(channel, batch, lease_until)
    return _record_failure(channel, batch, lease_until, error)


def _claim(channel_id: int) -> FlushResult | tuple[NotificationChannel, list[NotificationDelivery], datetime]:
    with transaction.atomic():
        # NO KEY: new deliveries of this channel (which reference it) can still be inserted
        # while it is held.
        channel = NotificationChannel.objects.select_for_update(no_key=True).filter(pk=channel_id).first()
        if channel is None:
            return FlushResult("gone")
        if not channel.enabled:
            return FlushResult("disabled")
        now = timezone.now()
        pending = NotificationDelivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING)
        due = list(pending.filter(next_attempt_at__lte=now).order_by("created_at", "pk")[:BATCH_MAX])
        if not due:
            return FlushResult("idle")
        held_until = pending.filter(attempts__gt=0, next_attempt_at__gt=now).aggregate(t=Min("next_attempt_at"))["t"]
        if held_until is not None:
            # A retry is waiting (or a send is in flight): these join it, one attempt for all.
            _defer(due, held_until)
            return FlushResult("waiting", deliveries=len(due), next_attempt_at=held_until)
        slot = _rate_limit_slot(channel, now)
        if slot is not None:
            woken = pending.filter(next_attempt_at=slot).exists()  # an earlier flush already asked for that slot
            _defer(due, slot)
            if not woken:
                _wake(channel.pk, delay_seconds=(slot - now).total_seconds(), trace_id=due[0].trace_id or None)
            log.info("notification channel at its rate limit; alerts wait and will be batched", channel=channel.name,
                     waiting=len(due), max_per_minute=channel.max_per_minute, send_at=slot.isoformat())
            return FlushResult("rate_limited", deliveries=len(due), next_attempt_at=slot)
        batch = _fit(due)
        lease_until = now + timedelta(seconds=LEASE_SECONDS)
        NotificationDelivery.objects.filter(pk__in=[d.pk for d in batch]).update(
            attempts=F("attempts") + 1, next_attempt_at=lease_until)
        for d in batch:
            d.attempts += 1
        return channel, batch, lease_until


def _defer(deliveries: list[NotificationDelivery], until: datetime) -> None:
    NotificationDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(next_attempt_at=until)


def _rate_limit_slot(channel: NotificationChannel, now: datetime) -> datetime | None:
    """None when the channel may send a message now, else when it may. A message is one send:
    the deliveries of a batch share their sent_at. max_per_minute 0 means no limit."""
    if not channel.max_per_minute:
        return None
    window_start = now - timedelta(seconds=RATE_WINDOW_SECONDS)
    sent = sorted(set(NotificationDelivery.objects.filter(
        channel=channel, status=DeliveryStatus.SENT, sent_at__gt=window_start).values_list("sent_at", flat=True)))
    if len(sent) < channel.max_per_minute:
        return None
    return sent[len(sent) - channel.max_per_minute] + timedelta(seconds=RATE_WINDOW_SECONDS)


_NOTIFY_TYPES = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "failure"}


def send_message(url: str, *, title: str, body: str, severity: Severity) -> str | None:
    """Send one message with Apprise. None on success, else why not (redacted: no part of the
    URL). Apprise reports a failure by its result, not by raising."""
    import apprise

    secrets.register_url(url)
    notifier = apprise.Apprise()
    if not notifier.add(url):
        return f"url: not an Apprise URL Apprise can send to (scheme '{secrets.url_scheme(url)}')"
    try:
        result = notifier.notify(body=body, title=title, notify_type=_NOTIFY_TYPES[severity],
                                 timeout=SEND_TIMEOUT_SECONDS)
    except Exception as exc:
        return clip(secrets.redact(f"{type(exc).__name__}: {exc}", url))
    try:
        if result:
            return None
        logs = getattr(result, "logs", None)
        reasons = [e.message for e in logs() if e.level in ("WARNING", "ERROR", "CRITICAL")] if logs else []
        status = getattr(getattr(result, "status", None), "name", "a failure")
        text = "; ".join(dict.fromkeys(reasons)) or f"Apprise reported {status}"
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    return clip(secrets.redact(text, url))


def _record_success(channel: NotificationChannel, batch: list[NotificationDelivery],
                    lease_until: datetime) -> FlushResult:
    sent_at = timezone.now()
    ids = [d.pk for d in batch]
    with transaction.atomic():
        NotificationDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SENT, sent_at=sent_at)
        NotificationChannel.objects.filter(pk=channel.pk).update(last_success_at=sent_at)
        pending = NotificationDelivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING)
        pending.filter(next_attempt_at=lease_until).update(next_attempt_at=sent_at)  # those that waited for this send
        if pending.filter(next_attempt_at__lte=sent_at).exists():
            _wake(channel.pk, trace_id=batch[-1].trace_id or None)
    log.info("notification sent", channel=channel.name, alerts=len(batch),
             event_ids=[str(d.event_id) for d in batch], trace_id=batch[0].trace_id or None)
    return FlushResult("sent", deliveries=len(batch))


def _record_failure(channel: NotificationChannel, batch: list[NotificationDelivery], lease_until: datetime,
                    error: str) -> FlushResult:
    now = timezone.now()
    error = clip(error)
    retry_at = now + timedelta(seconds=backoff_seconds(max(d.attempts for d in batch)))
    exhausted = [d for d in batch if d.attempts >= MAX_ATTEMPTS]
    retrying = [d for d in batch if d.attempts < MAX_ATTEMPTS]
    with transaction.atomic():
        # A FAILED delivery's next_attempt_at is when it was given up.
        NotificationDelivery.objects.filter(pk__in=[d.pk for d in exhausted]).update(
            status=DeliveryStatus.FAILED, last_error=error, next_attempt_at=now)
        NotificationDelivery.objects.filter(pk__in=[d.pk for d in retrying]).update(
            last_error=error, next_attempt_at=retry_at)
        NotificationDelivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING,
                                            next_attempt_at=lease_until).update(next_attempt_at=retry_at)
        NotificationChannel.objects.filter(pk=channel.pk).update(last_error=error, last_error_at=now)
        if NotificationDelivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING).exists():
            _wake(channel.pk, delay_seconds=(retry_at - now).total_seconds(), trace_id=batch[0].trace_id or None)
        if exhausted:
            _report_exhausted(channel, exhausted, error)
    log.warning("notification failed", channel=channel.name, alerts=len(batch), attempt=max(d.attempts for d in batch),
                max_attempts=MAX_ATTEMPTS, given_up=len(exhausted), retry_at=retry_at.isoformat() if retrying else None,
                error=error, event_ids=[str(d.event_id) for d in batch], trace_id=batch[0].trace_id or None)
    return FlushResult("failed", deliveries=len(batch), error=error, next_attempt_at=retry_at)


def _report_exhausted(channel: NotificationChannel, exhausted: list[NotificationDelivery], error: str) -> None:
    """A system.alert (component "notifications") the first time in a failure episode that a
    delivery of this channel is given up; the episode lasts until the channel delivers again."""
    ids = [d.pk for d in exhausted]
    earlier = NotificationDelivery.objects.filter(channel=channel, status=DeliveryStatus.FAILED).exclude(pk__in=ids)
    if channel.last_success_at is not None:
        earlier = earlier.filter(next_attempt_at__gt=channel.last_success_at)
    if earlier.exists():
        log.info("notification channel still failing; already reported in this episode", channel=channel.name,
                 given_up=len(exhausted))
        return
    severity = max((_severity(d.severity) for d in exhausted), key=lambda s: SEVERITY_RANK[s])
    if severity_rank(severity) < SEVERITY_RANK[Severity.WARNING]:
        severity = Severity.WARNING
    message = (f"notification channel '{channel.name}' failed {MAX_ATTEMPTS} times: {len(exhausted)} alert(s) not "
               f"delivered to it ({error}). Its further failures are not reported until it delivers again; the "
               "alerts are in the admin's notification deliveries.")
    publish(EventType.SYSTEM_ALERT, {"severity": severity.value, "component": NOTIFICATIONS_COMPONENT,
                                     "service": Service.ANALYTICS.value, "message": clip(message)},
            source=Service.ANALYTICS.value, trace_id=exhausted[0].trace_id or None)


# --- upkeep and operator actions -------------------------------------------------------------

def warm_up() -> None:
    """Load Apprise's plugins in this process (no network). The first send of a process would
    otherwise spend 0.5-2 s on it, in front of an alert; the sweep (every 10 s) does it first."""
    import apprise

    apprise.Apprise.instantiate("json://localhost")


def sweep() -> int:
    """Flush every enabled channel with a due delivery (its task lost, a retry or a rate-limit
    slot come); sync NOTIFY_CHANNELS. Returns how many channels were sent a task."""
    warm_up()
    sync_env_channels()
    now = timezone.now()
    ids = set(NotificationDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now,
                                                  channel__enabled=True)
              .order_by().values_list("channel_id", flat=True).distinct())
    for channel in _healthy_first(NotificationChannel.objects.filter(pk__in=ids)):
        _wake(channel.pk)
    return len(ids)


def send_test(channel: NotificationChannel, *, requested_by: str = "") -> NotificationDelivery:
    """A test message to one channel, whatever its minimum severity (rate limit and retries apply)."""
    now = timezone.now()
    trace_id = tracing.current_trace_id() or tracing.new_trace_id()
    who = f" by {requested_by}" if requested_by else ""
    delivery = NotificationDelivery.objects.create(
        channel=channel, event_id=uuid.uuid4(), severity=Severity.INFO.value,
        title=f"[{Severity.INFO.value.upper()}] {NOTIFICATIONS_COMPONENT}: test",
        body=f"Test message to channel '{channel.name}', requested{who} at {now:%Y-%m-%d %H:%M:%S} UTC.\n"
             f"trace_id: {trace_id}",
        next_attempt_at=now, created_at=now, trace_id=trace_id)
    _wake(channel.pk, trace_id=trace_id)
    return delivery


def retry_failed(delivery_ids) -> int:
    """Operator action: FAILED deliveries are pending again, with a fresh count of attempts."""
    ids = list(delivery_ids)
    now = timezone.now()
    with transaction.atomic():
        channel_ids = set(NotificationDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.FAILED)
                          .order_by().values_list("channel_id", flat=True))
        n = NotificationDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.FAILED).update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now)
        for channel_id in sorted(channel_ids):
            _wake(channel_id)
    return n
