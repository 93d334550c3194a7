"""The outbox bus against the real database and Redis broker (no worker needed here)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from qtweb import tracing
from qtweb.events import bus, registry
from qtweb.events.models import AppendOnlyError, DeliveryStatus, Event, EventDelivery
from qtweb.events.schemas import EventType, EventValidationError, build_envelope
from qtweb.queues import Queue

pytestmark = pytest.mark.django_db

PROBE_SUBSCRIBERS = {"analytics.observer", "probe.inference", "probe.learning", "probe.execution"}


def probe(probe_id="p1", note=""):
    return {"probe_id": probe_id, "sent_at": datetime.now(UTC), "note": note}


def queue_lengths(redis_conn) -> dict[str, int]:
    return {q.value: redis_conn.llen(q.value) for q in Queue}


@pytest.fixture
def clean_broker(redis_conn):
    redis_conn.flushdb()
    yield redis_conn
    redis_conn.flushdb()


def test_publish_writes_event_and_one_delivery_per_subscriber_then_dispatches_on_commit(
    clean_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        env = bus.publish(EventType.PLATFORM_PROBE, probe(), source="test")
        # written in the caller's transaction, nothing sent yet
        assert Event.objects.filter(pk=env.event_id).exists()
        assert queue_lengths(clean_broker) == {q.value: 0 for q in Queue}
    rows = EventDelivery.objects.filter(event_id=env.event_id)
    assert {d.subscriber for d in rows} == PROBE_SUBSCRIBERS
    assert {d.status for d in rows} == {DeliveryStatus.PENDING}
    assert len(callbacks) == 1
    callbacks[0]()  # the commit
    assert queue_lengths(clean_broker) == {"inference": 1, "execution": 1, "learning": 1, "ops": 1}
    message = json.loads(clean_broker.lindex("inference", 0))
    assert message["headers"]["task"] == "qtweb.events.deliver"
    assert message["headers"]["trace_id"] == env.trace_id


def test_rolled_back_publish_leaves_nothing_and_sends_nothing(clean_broker, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        env = bus.publish(EventType.PLATFORM_PROBE, probe())
        raise RuntimeError("the state change failed")
    assert not Event.objects.filter(pk=env.event_id).exists()
    assert not EventDelivery.objects.exists()
    assert callbacks == []
    assert sum(queue_lengths(clean_broker).values()) == 0


def test_invalid_event_names_the_field_and_writes_nothing(clean_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(EventValidationError, match="payload.confidence"):
            bus.publish(EventType.SIGNAL_GENERATED, {
                "symbol": "BTC/USDT", "timeframe": "5m", "action": "BUY", "confidence": 7, "score": 0.1,
                "ensemble_agreement": 0.5, "models_voted": 3})
        with pytest.raises(EventValidationError, match="payload.probe_id"):
            bus.publish(EventType.PLATFORM_PROBE, {"sent_at": datetime.now(UTC)})
    assert Event.objects.count() == 0 and EventDelivery.objects.count() == 0
    assert callbacks == []
    assert sum(queue_lengths(clean_broker).values()) == 0


def test_trace_id_comes_from_context_when_not_given():
    with tracing.trace("trace-abc-123456") as tid:
        env = bus.publish(EventType.PLATFORM_PROBE, probe())
    assert env.trace_id == tid == "trace-abc-123456"
    assert len(bus.publish(EventType.PLATFORM_PROBE, probe()).trace_id) == 32  # a fresh one outside


def test_events_are_append_only():
    env = bus.publish(EventType.PLATFORM_PROBE, probe())
    event = Event.objects.get(pk=env.event_id)
    event.source = "tampered"
    with pytest.raises(AppendOnlyError):
        event.save()


def _delivery(env, subscriber):
    return EventDelivery.objects.get(event_id=env.event_id, subscriber=subscriber)


def test_consume_runs_the_handler_once_and_skips_duplicates(monkeypatch):
    calls = []
    registry.subscribe("test.counter", Queue.OPS, [EventType.PLATFORM_PROBE], lambda e: calls.append(e.event_id))
    try:
        env = bus.publish(EventType.PLATFORM_PROBE, probe())
        d = _delivery(env, "test.counter")
        wire = env.model_dump(mode="json")
        assert bus.consume(d.pk, "test.counter", wire, worker="w1") == "handled"
        assert bus.consume(d.pk, "test.counter", wire, worker="w2") == "duplicate"
        assert calls == [env.event_id]
        d.refresh_from_db()
        assert (d.status, d.processed_by, d.attempts) == (DeliveryStatus.DONE, "w1", 1)
    finally:
        registry.unsubscribe("test.counter")


def test_a_failing_handler_rolls_back_its_writes_and_leaves_the_delivery_pending():
    def handler(event):
        Event.objects.create(event_id=event.event_id.__class__(int=1), type="platform.probe", version=1,
                             trace_id="x" * 16, source="side-effect", timestamp=datetime.now(UTC), payload={})
        raise ValueError("boom")

    registry.subscribe("test.failing", Queue.OPS, [EventType.PLATFORM_PROBE], handler)
    try:
        env = bus.publish(EventType.PLATFORM_PROBE, probe())
        d = _delivery(env, "test.failing")
        with pytest.raises(ValueError):
            bus.consume(d.pk, "test.failing", env.model_dump(mode="json"), worker="w")
        assert not Event.objects.filter(source="side-effect").exists()
        d.refresh_from_db()
        assert d.status == DeliveryStatus.PENDING
        bus.record_failure(d.pk, ValueError("boom"), final=False)
        bus.record_failure(d.pk, ValueError("boom again"), final=True)
        d.refresh_from_db()
        assert (d.status, d.attempts, d.last_error) == (DeliveryStatus.FAILED, 2, "ValueError: boom again")
    finally:
        registry.unsubscribe("test.failing")


def test_unknown_subscriber_is_an_error_not_a_silent_skip():
    env = bus.publish(EventType.PLATFORM_PROBE, probe())
    with pytest.raises(bus.UnknownSubscriber):
        bus.consume(1, "nobody.here", env.model_dump(mode="json"), worker="w")


def test_redispatch_sends_only_stale_pending_deliveries(clean_broker):
    env = bus.publish(EventType.PLATFORM_PROBE, probe())
    # inside this test transaction the on-commit dispatch never runs: as if the broker lost it
    assert bus.redispatch_pending(older_than_seconds=60) == 0  # too fresh for the sweep
    EventDelivery.objects.filter(event_id=env.event_id, subscriber="probe.learning").update(
        status=DeliveryStatus.DONE)
    EventDelivery.objects.filter(event_id=env.event_id).update(dispatched_at=datetime.now(UTC) - timedelta(minutes=5))
    assert bus.redispatch_pending(older_than_seconds=60) == 3
    assert queue_lengths(clean_broker) == {"inference": 1, "execution": 1, "learning": 0, "ops": 1}
    counts = dict(EventDelivery.objects.filter(event_id=env.event_id).values_list("subscriber", "dispatch_count"))
    assert counts == {"analytics.observer": 2, "probe.inference": 2, "probe.execution": 2, "probe.learning": 1}
    # a worker at start re-sends its own queue's pending deliveries, whatever their age
    assert bus.redispatch_pending(queues=["inference"], older_than_seconds=0) == 1
    assert clean_broker.llen("inference") == 2


def test_retry_failed_puts_deliveries_back(clean_broker, django_capture_on_commit_callbacks):
    env = bus.publish(EventType.PLATFORM_PROBE, probe())
    d = _delivery(env, "probe.inference")
    bus.record_failure(d.pk, RuntimeError("x"), final=True)
    clean_broker.flushdb()
    with django_capture_on_commit_callbacks(execute=True):
        assert bus.retry_failed([d.pk]) == 1
    d.refresh_from_db()
    assert d.status == DeliveryStatus.PENDING and d.last_error == ""
    assert clean_broker.llen("inference") == 1


def test_prune_keeps_unfinished_and_recent_events():
    old = datetime.now(UTC) - timedelta(hours=100)

    def make(event_type, payload, status, age=old):
        env = bus.publish(event_type, payload)
        Event.objects.filter(pk=env.event_id).update(timestamp=age)
        EventDelivery.objects.filter(event_id=env.event_id).update(status=status)
        return env.event_id

    done_old = make(EventType.PLATFORM_PROBE, probe(), DeliveryStatus.DONE)
    failed_old = make(EventType.PLATFORM_PROBE, probe(), DeliveryStatus.FAILED)
    pending_old = make(EventType.PLATFORM_PROBE, probe(), DeliveryStatus.PENDING)
    done_recent = make(EventType.PLATFORM_PROBE, probe(), DeliveryStatus.DONE, age=datetime.now(UTC))
    hb = {"service": "ai-service", "queue": "inference", "worker": "w", "host": "h", "pid": 1, "uptime_seconds": 1,
          "cpu_percent": 1, "memory_percent": 1, "rss_mb": 1, "active_tasks": 0, "events_processed_last_minute": 0}
    hb_2h = make(EventType.SERVICE_HEARTBEAT, hb, DeliveryStatus.DONE, age=datetime.now(UTC) - timedelta(hours=2))

    deleted = bus.prune_processed(retention_hours=72, heartbeat_retention_hours=1)
    remaining = set(Event.objects.values_list("pk", flat=True))
    assert deleted == 2
    assert done_old not in remaining and hb_2h not in remaining
    assert {failed_old, pending_old, done_recent} <= remaining
    assert not EventDelivery.objects.filter(event_id=done_old).exists()


def test_registry_refuses_bad_subscriptions():
    with pytest.raises(registry.SubscriptionError, match="unknown event types"):
        registry.subscribe("x.bad", Queue.OPS, ["no.such.type"], lambda e: None)
    with pytest.raises(registry.SubscriptionError, match="unknown queue"):
        registry.subscribe("x.bad", "fast-lane", [EventType.PLATFORM_PROBE], lambda e: None)
    assert registry.get_subscription("x.bad") is None


def test_analytics_subscribes_to_every_type():
    for t in EventType:
        assert "analytics.observer" in {s.name for s in registry.subscribers_for(t.value)}
        assert registry.get_subscription("analytics.observer").queue is Queue.OPS


def test_build_envelope_uses_current_schema_version():
    env = build_envelope(EventType.PLATFORM_PROBE, probe(), trace_id="abcdefgh", source="t")
    assert env.version == 1


def test_a_retry_refreshes_the_dispatch_time_so_the_sweep_leaves_it_alone():
    env = bus.publish(EventType.PLATFORM_PROBE, probe())
    d = _delivery(env, "probe.inference")
    EventDelivery.objects.filter(pk=d.pk).update(dispatched_at=datetime.now(UTC) - timedelta(minutes=5))
    bus.record_failure(d.pk, RuntimeError("transient"), final=False)
    d.refresh_from_db()
    assert datetime.now(UTC) - d.dispatched_at < timedelta(seconds=5)


def test_publish_many_is_all_or_nothing_and_names_the_bad_item(clean_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(EventValidationError, match=r"\[1\]\.payload\.probe_id"):
            bus.publish_many([(EventType.PLATFORM_PROBE, probe("a")), (EventType.PLATFORM_PROBE, {"sent_at": 1})])
        assert Event.objects.count() == 0 and sum(queue_lengths(clean_broker).values()) == 0
        with tracing.trace("batch-trace-0001"):
            envs = bus.publish_many([(EventType.PLATFORM_PROBE, probe(str(i))) for i in range(3)])
    assert [e.trace_id for e in envs] == ["batch-trace-0001"] * 3
    assert EventDelivery.objects.filter(event_id__in=[e.event_id for e in envs]).count() == 3 * len(PROBE_SUBSCRIBERS)
    assert queue_lengths(clean_broker) == {"inference": 3, "execution": 3, "learning": 3, "ops": 3}
