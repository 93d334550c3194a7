"""A service switched off, with real workers: its events wait in the outbox (never in Redis),
and are delivered exactly once when the service comes back.

Like `make run`, every process reads the same switches: the workers of this test get
ANALYTICS_OS_SERVICE_ENABLED=false in their environment and the test process has it in its
settings. Only the inference and execution workers run; the ops and learning workers (the
analytics-os service) start later with the switch back on."""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from qtweb import rpc
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from tests.support.tasks import publish_probe
from tests.support.waiting import wait_for
from tests.support.workers import WorkerSet

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ANALYTICS_QUEUES = ("learning", "ops")
WORKER_START_TIMEOUT_SECONDS = 90


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("integration tests need PostgreSQL (set TEST_DATABASE_URL)")
    return f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _answers(service: str) -> bool:
    try:
        rpc.call(service, "ping", timeout=1, retries=0)
        return True
    except rpc.RpcError:
        return False


@pytest.fixture
def analytics_off(paused_workers, settings, tmp_path):
    """This test's own workers (the session's, if running, are paused: they read the switch on)."""
    settings.ANALYTICS_OS_SERVICE_ENABLED = False
    ws = WorkerSet(_database_url(), settings.REDIS_URL, tmp_path, extra_env={"ANALYTICS_OS_SERVICE_ENABLED": "false"})
    # From here on every process that publishes has the switch off (the session's workers may
    # have sent a heartbeat to ops just before they were paused).
    ws.switched_off_at = datetime.now(UTC)
    try:
        ws.start("inference")
        ws.start("execution")
        assert wait_for(lambda: _answers("ai") and _answers("exec-risk"), timeout=WORKER_START_TIMEOUT_SECONDS,
                        poll=0.5), f"workers not ready; logs in {tmp_path}"
        yield ws
    finally:
        ws.stop_all()


def _in_broker(redis_conn, queue: str, event_id: str) -> bool:
    """Whether any message waiting on `queue` (or taken and unacknowledged) carries the event."""
    waiting = redis_conn.lrange(queue, 0, -1)
    unacked = redis_conn.hvals("unacked")
    return any(event_id.encode() in m for m in [*waiting, *unacked])


def test_events_to_a_disabled_service_wait_in_the_outbox_and_are_delivered_once_it_is_back(
        analytics_off, settings, redis_conn, client):
    ws = analytics_off
    probe_id = uuid.uuid4().hex
    # Published by the execution worker, a process that read the switch from its environment.
    publish_probe.apply_async(args=(probe_id,), queue="execution")
    counts = {name: f"probe:{probe_id}:count:{name}" for name in ("probe.inference", "probe.execution",
                                                                  "probe.learning")}
    assert wait_for(lambda: all(redis_conn.get(counts[n]) == b"1" for n in ("probe.inference", "probe.execution")),
                    timeout=20), "the enabled services did not get the probe"
    event = Event.objects.get(type="platform.probe", payload__probe_id=probe_id)
    assert event.source == "exec-risk-service"
    held = {d.subscriber: d for d in EventDelivery.objects.filter(event=event, queue__in=ANALYTICS_QUEUES)}
    assert set(held) == {"probe.learning", "analytics.observer"}
    for d in held.values():
        assert d.status == DeliveryStatus.PENDING and d.dispatch_count == 0 and d.attempts == 0
        assert "ANALYTICS_OS_SERVICE_ENABLED=false" in d.last_error
    # The workers' own heartbeats are held too: nothing of any process went to the analytics queues.
    ours = EventDelivery.objects.filter(queue__in=ANALYTICS_QUEUES, created_at__gte=ws.switched_off_at)
    assert wait_for(lambda: ours.filter(event__type="service.heartbeat").exists(), timeout=15)
    assert not ours.filter(dispatch_count__gt=0).exists()
    # A re-dispatch sweep in a process with the switch off does not send them either.
    from qtweb.events.bus import redispatch_pending

    redispatch_pending(older_than_seconds=0)
    for queue in ANALYTICS_QUEUES:
        assert not _in_broker(redis_conn, queue, str(event.event_id)), queue
    assert redis_conn.get(counts["probe.learning"]) is None
    health = client.get("/health").json()
    assert health["services"]["analytics-os-service"]["status"] == "DISABLED"
    assert not any(r.startswith("analytics-os-service") for r in health["reasons"])

    # The analytics service comes back: the switch on (this process, its workers), workers started.
    switched_on_at = datetime.now(UTC)
    settings.ANALYTICS_OS_SERVICE_ENABLED = True
    ws.extra_env["ANALYTICS_OS_SERVICE_ENABLED"] = "true"
    ws.start("ops")
    ws.start("learning")
    assert wait_for(lambda: redis_conn.get(counts["probe.learning"]) == b"1", timeout=WORKER_START_TIMEOUT_SECONDS,
                    poll=0.2), f"the held delivery never arrived; logs in {ws.log_dir}"
    assert wait_for(lambda: not EventDelivery.objects.filter(event=event).exclude(status=DeliveryStatus.DONE)
                    .exists(), timeout=20)
    time.sleep(2.0)  # room for a duplicate to show up, if one had been sent
    for d in EventDelivery.objects.filter(event=event):
        assert d.attempts == 1 and d.last_error == "", d.subscriber
    for d in EventDelivery.objects.filter(event=event, queue__in=ANALYTICS_QUEUES):
        assert d.dispatch_count == 1 and d.processed_by.split("@")[0] in ANALYTICS_QUEUES, d.subscriber
    assert [json.loads(x)["subscriber"] for x in redis_conn.lrange(f"probe:{probe_id}", 0, -1)].count(
        "probe.learning") == 1
    # What the workers published while analytics was off reached it as well.
    heartbeats = ours.filter(event__type="service.heartbeat", created_at__lt=switched_on_at)
    assert heartbeats.exists()
    assert wait_for(lambda: not heartbeats.exclude(status=DeliveryStatus.DONE).exists(), timeout=20)
