"""Faults with real workers: failing subscribers, a flushed broker, duplicates, a dead worker,
an RPC with nobody listening."""
from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime

import pytest

from qtweb import rpc
from qtweb.events import bus
from qtweb.events.models import DeliveryStatus, EventDelivery
from qtweb.events.schemas import EventType
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]



def _publish_probe(note: str = "") -> tuple[str, object]:
    probe_id = uuid.uuid4().hex
    env = bus.publish(EventType.PLATFORM_PROBE, {"probe_id": probe_id, "sent_at": datetime.now(UTC), "note": note})
    return probe_id, env


def _count(redis_conn, probe_id: str, subscriber: str) -> int:
    return int(redis_conn.get(f"probe:{probe_id}:count:{subscriber}") or 0)


def _deliveries(env) -> dict[str, EventDelivery]:
    return {d.subscriber: d for d in EventDelivery.objects.filter(event_id=env.event_id)}


def test_a_raising_subscriber_is_retried_then_marked_failed_and_others_are_unaffected(celery_workers, redis_conn,
                                                                                       settings):
    probe_id, env = _publish_probe(note="fail:probe.learning")
    learning = wait_for(lambda: _deliveries(env)["probe.learning"].status == DeliveryStatus.FAILED
                     and _deliveries(env)["probe.learning"], timeout=20)
    assert learning, "the failing delivery never reached FAILED"
    tries = 1 + settings.EVENT_MAX_RETRIES  # the test workers run with the test settings
    assert learning.attempts == tries
    assert "ProbeFailure: probe.learning told to fail" in learning.last_error
    assert wait_for(lambda: all(d.status == DeliveryStatus.DONE for s, d in _deliveries(env).items()
                             if s != "probe.learning"), timeout=10)
    assert _count(redis_conn, probe_id, "probe.inference") == 1
    assert _count(redis_conn, probe_id, "probe.execution") == 1
    assert _count(redis_conn, probe_id, "probe.learning") == 0


def test_redis_flushed_after_commit_the_event_is_redispatched_and_handled_exactly_once(celery_workers, redis_conn):
    celery_workers.stop("inference@test")  # its message will sit in Redis...
    try:
        probe_id, env = _publish_probe()
        assert wait_for(lambda: redis_conn.llen("inference") >= 1, timeout=5), "publish did not dispatch"
        redis_conn.flushdb()  # ...and be lost with everything else in the broker
        assert redis_conn.llen("inference") == 0
        assert _deliveries(env)["probe.inference"].status == DeliveryStatus.PENDING
    finally:
        celery_workers.start("inference")  # a worker start re-dispatches its queue's pending deliveries
    assert wait_for(lambda: _deliveries(env)["probe.inference"].status == DeliveryStatus.DONE, timeout=30)
    time.sleep(1.0)  # any late duplicate would have run by now
    assert _count(redis_conn, probe_id, "probe.inference") == 1
    assert _deliveries(env)["probe.inference"].dispatch_count == 2
    celery_workers.wait_ready()


def test_the_same_event_dispatched_twice_is_handled_once(celery_workers, redis_conn):
    probe_id, env = _publish_probe()
    d = _deliveries(env)["probe.execution"]
    wire = env.model_dump(mode="json")
    for _ in range(2):  # two more copies of the same delivery, racing the first
        assert bus.send_delivery(d.pk, d.subscriber, d.queue, wire)
    assert wait_for(lambda: _deliveries(env)["probe.execution"].status == DeliveryStatus.DONE, timeout=10)
    assert wait_for(lambda: redis_conn.llen("execution") == 0, timeout=10)
    time.sleep(0.5)
    assert _count(redis_conn, probe_id, "probe.execution") == 1
    assert _deliveries(env)["probe.execution"].attempts == 1


def test_a_pool_process_killed_mid_event_loses_nothing(celery_workers, redis_conn):
    """acks_late + reject_on_worker_lost: the message goes back to the queue and is handled once."""
    import os

    import psutil

    probe_id, env = _publish_probe(note="sleep:3")
    started = wait_for(lambda: redis_conn.lindex(f"probe:{probe_id}:started:probe.execution", 0), timeout=10)
    assert started, "handler never started"
    child_pid = int(started)
    main = psutil.Process(celery_workers.procs["execution@test"].pid)
    assert child_pid in {c.pid for c in main.children(recursive=True)}
    os.kill(child_pid, signal.SIGKILL)  # the pool process dies mid-handler; the worker lives on
    assert wait_for(lambda: _deliveries(env)["probe.execution"].status == DeliveryStatus.DONE, timeout=30)
    assert _count(redis_conn, probe_id, "probe.execution") == 1
    assert redis_conn.llen(f"probe:{probe_id}:started:probe.execution") == 2  # it ran again, to completion


def test_a_killed_worker_shows_its_service_critical_within_20_seconds(celery_workers, client):
    assert wait_for(lambda: client.get("/health").json()["services"]["exec-risk-service"]["status"] == "HEALTHY",
                 timeout=15, poll=0.5)
    killed_at = time.monotonic()
    celery_workers.stop("execution@test", sig=signal.SIGKILL)  # a crash: no clean-stop marker
    try:
        body = wait_for(lambda: (b := client.get("/health").json())["services"]["exec-risk-service"]["status"]
                     == "CRITICAL" and b, timeout=25, poll=0.5)
        took = time.monotonic() - killed_at
        assert body, "exec-risk-service never became CRITICAL"
        assert took <= 20, f"CRITICAL only after {took:.1f}s"
        assert body["status"] == "DEGRADED"  # the web itself: a service down is not a 503
        assert "execution" in body["services"]["exec-risk-service"]["reason"]
        assert body["services"]["ai-service"]["status"] == "HEALTHY"
        assert client.get("/health").status_code == 200
    finally:
        celery_workers.start("execution")
        celery_workers.wait_ready()
    # Back to HEALTHY once the new worker has beaten and reported its modules (start-up reconciliation
    # first): on a loaded 2-core machine that has taken more than 15 s.
    assert wait_for(lambda: client.get("/health").json()["services"]["exec-risk-service"]["status"] == "HEALTHY",
                    timeout=30, poll=0.5)


def test_rpc_to_a_service_with_no_worker_raises_a_typed_timeout_not_a_hang(celery_workers):
    celery_workers.stop("inference@test")
    try:
        t0 = time.monotonic()
        with pytest.raises(rpc.RpcTimeout) as info:
            rpc.call("ai", "ping", timeout=0.5, retries=2)
        took = time.monotonic() - t0
    finally:
        celery_workers.start("inference")
    assert info.value.service == "ai-service" and info.value.command == "ping"
    assert "3 tries" in str(info.value) and "inference" in str(info.value)
    assert 1.5 <= took < 6, f"took {took:.2f}s for 3 tries of 0.5s"
    celery_workers.wait_ready()
    assert rpc.call("ai", "ping", timeout=5)["service"] == "ai-service"  # the expired requests did not pile up
