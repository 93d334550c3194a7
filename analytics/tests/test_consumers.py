"""The dashboard websocket through the real ASGI stack (origin check, session auth, routing)
and the real Redis pub/sub channel layer: events published on the bus reach the socket.

The channel layer is Redis pub/sub, which is not scoped by the Redis database number: another
test run on the same Redis may push its own events to the "dashboard" group. So every check
looks for the events this test published (by event_id), never for "the next message".
"""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from analytics.consumers import CLOSE_UNAUTHENTICATED
from qtweb.asgi import application
from qtweb.events import push
from qtweb.events.bus import publish
from qtweb.health.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/dashboard/"
HOST = "127.0.0.1"  # in ALLOWED_HOSTS (settings default), so AllowedHostsOriginValidator lets it through
SERVICES = {"ai-service", "exec-risk-service", "analytics-os-service"}


def heartbeat_payload(service: str = "ai-service", queue: str = "inference", worker: str | None = None) -> dict:
    return {
        "service": service,
        "queue": queue,
        "worker": worker or f"{queue}@ws-{uuid.uuid4().hex[:8]}",
        "host": "test-host",
        "pid": 4242,
        "uptime_seconds": 12.5,
        "cpu_percent": 3.0,
        "memory_percent": 1.5,
        "rss_mb": 80.0,
        "active_tasks": 0,
        "events_processed_last_minute": 7,
    }


def session_cookie(username: str = "alice") -> str:
    """A real session for a real user, as the browser would hold it after logging in."""
    user = get_user_model().objects.create_user(username, password="pw-not-used-12345")
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def communicator(cookie: str | None = None, origin: str | None = f"http://{HOST}") -> WebsocketCommunicator:
    headers = [(b"host", HOST.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, PATH, headers=headers)


async def connect_logged_in(cookie: str) -> tuple[WebsocketCommunicator, dict]:
    comm = communicator(cookie)
    connected, _ = await comm.connect(timeout=5)
    assert connected, "a logged-in user's websocket was refused"
    first = await comm.receive_json_from(timeout=5)
    return comm, first


async def receive_until(comm: WebsocketCommunicator, event_id: str, timeout: float = 5.0) -> list[dict]:
    """Every message up to and including the event with `event_id`; fails if it never comes."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"event {event_id} did not arrive within {timeout}s; got {seen}"
        try:
            msg = await comm.receive_json_from(timeout=left)
        except TimeoutError:
            raise AssertionError(f"event {event_id} did not arrive within {timeout}s; got {seen}") from None
        seen.append(msg)
        if msg.get("kind") == "event" and msg["event"].get("event_id") == event_id:
            return seen


def test_anonymous_websocket_is_refused():
    async def scenario():
        comm = communicator(cookie=None)
        connected, code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert connected is False
    assert code == CLOSE_UNAUTHENTICATED == 4401


def test_invalid_session_cookie_is_refused():
    async def scenario():
        comm = communicator(cookie=f"{settings.SESSION_COOKIE_NAME}=not-a-real-session-key")
        connected, code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, CLOSE_UNAUTHENTICATED)


def test_logged_in_user_from_a_foreign_origin_is_refused():
    cookie = session_cookie()

    async def scenario():
        comm = communicator(cookie, origin="http://evil.example.com")
        connected, _ = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_logged_in_user_receives_snapshot_of_every_service():
    now = datetime.now(UTC)
    WorkerHeartbeat.objects.create(worker="inference@snap", service="ai-service", queue="inference", host="h",
                                   pid=1, started_at=now - timedelta(minutes=5), last_seen=now - timedelta(seconds=2))
    WorkerHeartbeat.objects.create(worker="execution@snap", service="exec-risk-service", queue="execution",
                                   host="h", pid=2, started_at=now - timedelta(minutes=5),
                                   last_seen=now - timedelta(seconds=120))
    cookie = session_cookie()

    async def scenario():
        comm, first = await connect_logged_in(cookie)
        await comm.send_json_to({"kind": "refresh"})
        again = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"kind": "nonsense"})
        error = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return first, again, error

    first, again, error = async_to_sync(scenario)()
    assert first["kind"] == "snapshot"
    services = first["services"]
    assert set(services) == SERVICES
    assert services["ai-service"]["status"] == "HEALTHY"
    assert 1.0 <= services["ai-service"]["last_heartbeat_age_seconds"] < 30
    assert services["exec-risk-service"]["status"] == "CRITICAL"
    assert services["exec-risk-service"]["last_heartbeat_age_seconds"] >= 120
    assert "execution" in services["exec-risk-service"]["reason"]
    assert services["analytics-os-service"]["status"] == "CRITICAL"
    assert services["analytics-os-service"]["last_heartbeat_age_seconds"] is None
    assert again["kind"] == "snapshot" and set(again["services"]) == SERVICES
    assert error["kind"] == "error"


def test_published_heartbeat_arrives_as_event():
    cookie = session_cookie()
    payload = heartbeat_payload()

    async def scenario():
        comm, first = await connect_logged_in(cookie)
        assert first["kind"] == "snapshot"
        envelope = await sync_to_async(publish)("service.heartbeat", payload, source="ai-service")
        seen = await receive_until(comm, str(envelope.event_id))
        await comm.disconnect()
        return envelope, seen[-1]

    envelope, msg = async_to_sync(scenario)()
    assert msg["kind"] == "event"
    event = msg["event"]
    assert event["type"] == "service.heartbeat"
    assert event["payload"] == payload
    assert event["trace_id"] == envelope.trace_id
    assert event["source"] == "ai-service"
    assert event["timestamp"]


def test_health_status_and_system_alert_arrive_but_unforwarded_types_do_not():
    cookie = session_cookie()
    health = {
        "status": "DEGRADED",
        "services": {
            "ai-service": {"status": "HEALTHY", "heartbeat_age_seconds": 1.0},
            "exec-risk-service": {"status": "DEGRADED", "heartbeat_age_seconds": 40.0, "reason": "slow"},
        },
    }
    alert = {"severity": "warning", "component": "health_monitor", "message": "exec-risk-service degraded"}
    probe = {"probe_id": uuid.uuid4().hex, "sent_at": datetime.now(UTC)}

    async def scenario():
        comm, _ = await connect_logged_in(cookie)
        publish_ = sync_to_async(publish)
        probe_env = await publish_("platform.probe", probe)
        await sync_to_async(push.drain)()  # the probe's group_send is done before the others start
        health_env = await publish_("health.status", health, source="analytics-os-service")
        alert_env = await publish_("system.alert", alert, source="analytics-os-service")
        # Redis delivers one connection's pub/sub messages in order, so once the alert
        # (published after the probe's push completed) is here, a forwarded probe would be too.
        seen = await receive_until(comm, str(alert_env.event_id))
        await comm.disconnect()
        return probe_env, health_env, seen

    probe_env, health_env, seen = async_to_sync(scenario)()
    ids = {m["event"]["event_id"]: m["event"] for m in seen if m.get("kind") == "event"}
    assert str(probe_env.event_id) not in ids
    assert ids[str(health_env.event_id)]["payload"]["services"]["exec-risk-service"]["status"] == "DEGRADED"
    assert all(m["kind"] == "event" for m in seen)
    from analytics.consumers import FORWARDED_TYPES

    # only the forwarded types (pub/sub is not separated by Redis database: another run's events may show up)
    assert {e["type"] for e in ids.values()} <= FORWARDED_TYPES


def test_event_published_in_a_rolled_back_transaction_never_reaches_the_socket():
    from django.db import transaction

    cookie = session_cookie()

    class Rollback(Exception):
        pass

    def publish_then_roll_back() -> str:
        try:
            with transaction.atomic():
                env = publish("service.heartbeat", heartbeat_payload(worker="inference@rolled-back"))
                raise Rollback
        except Rollback:
            return str(env.event_id)

    async def scenario():
        comm, _ = await connect_logged_in(cookie)
        rolled_back_id = await sync_to_async(publish_then_roll_back)()
        marker = await sync_to_async(publish)("service.heartbeat", heartbeat_payload())
        seen = await receive_until(comm, str(marker.event_id))
        await comm.disconnect()
        return rolled_back_id, seen

    rolled_back_id, seen = async_to_sync(scenario)()
    assert rolled_back_id not in {m["event"]["event_id"] for m in seen if m.get("kind") == "event"}

