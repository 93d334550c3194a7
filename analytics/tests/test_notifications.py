"""Operator notifications, in process: real Apprise sending to a real JSON webhook on loopback,
the real database. (The same with a real ops worker and the event bus: tests/test_notifications_integration.py.)"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from analytics.models import DeliveryStatus, NotificationChannel, NotificationDelivery
from analytics.notifications import channels, dispatch, secrets
from core.enums import Severity
from qtweb import tracing
from qtweb.events import EventType, publish
from qtweb.events.models import Event

pytestmark = pytest.mark.django_db


class WebhookServer:
    """A JSON webhook on 127.0.0.1 that records what Apprise posts to it, answering `status`
    after `delay_seconds`."""

    def __init__(self, status: int = 200, delay_seconds: float = 0.0):
        self.status, self.delay_seconds = status, delay_seconds
        self.received: list[dict] = []  # the posted JSON, plus "path" and "received_at" (monotonic)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.received.append({**json.loads(raw or b"{}"), "path": self.path,
                                            "received_at": time.monotonic()})
                time.sleep(server.delay_seconds)
                self.send_response(server.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str = "/hook", query: str = "") -> str:
        return f"json://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def messages(self) -> list[dict]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages():
                if predicate(m):
                    return m
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


def make_channel(name: str, url: str, *, min_severity: str = "info", max_per_minute: int = 60) -> NotificationChannel:
    channel = NotificationChannel(name=name, min_severity=min_severity, max_per_minute=max_per_minute)
    channels.apply_url(channel, url=url)
    channel.save()
    return channel


def alert(message: str, *, severity: str = "warning", component: str = "health_monitor",
          service: str | None = "exec-risk-service"):
    payload = {"severity": severity, "component": component, "message": message}
    if service:
        payload["service"] = service
    return publish(EventType.SYSTEM_ALERT, payload, source="analytics-os-service", trace_id=tracing.new_trace_id())


def make_due(channel: NotificationChannel) -> None:
    """Time passes: every pending delivery of the channel is due now."""
    NotificationDelivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING).update(
        next_attempt_at=timezone.now() - timedelta(milliseconds=1))


# --- secrets -------------------------------------------------------------------------------

SECRET_URL = "json://alice:s3cretPass@hooks.example.com:8443/T0KEN-abc123/xyzSIGN987?token=qwerty99"
SECRET_PIECES = ["s3cretPass", "hooks.example.com", "8443", "T0KEN-abc123", "xyzSIGN987", "qwerty99", "alice"]


def test_redact_removes_the_url_and_every_part_of_it():
    text = (f"failed {SECRET_URL}; POST https://hooks.example.com:8443/T0KEN-abc123/xyzSIGN987?token=qwerty99 "
            f"(user alice, password s3cretPass); quoted {quote('T0KEN-abc123/xyzSIGN987', safe='')}")
    clean = secrets.redact(text, SECRET_URL)
    for piece in SECRET_PIECES:
        assert piece not in clean, (piece, clean)
    assert clean.startswith("failed ***") and "(user ***, password ***)" in clean


def test_apprise_errors_and_log_records_never_show_the_url(caplog):
    url = f"json://127.0.0.1:{refused_port()}/T0KEN-abc123/xyzSIGN987"
    with caplog.at_level(logging.DEBUG):
        error = dispatch.send_message(url, title="t", body="b", severity=Severity.WARNING)
    assert error and "Connection error" in error
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "JSON" in logged  # Apprise did log (its DEBUG lines name the URL it loaded)
    for piece in ("T0KEN-abc123", "xyzSIGN987", "127.0.0.1", str(url.split(":")[2].split("/")[0])):
        assert piece not in error and piece not in logged, piece


def test_encryption_round_trip_and_key_rotation(settings):
    settings.FIELD_ENCRYPTION_KEY = ""
    stored_with_derived_key = secrets.encrypt_url(SECRET_URL)
    assert all(p not in stored_with_derived_key for p in SECRET_PIECES)
    assert secrets.decrypt_url(stored_with_derived_key) == SECRET_URL

    from cryptography.fernet import Fernet

    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()
    stored_with_field_key = secrets.encrypt_url(SECRET_URL)
    assert secrets.decrypt_url(stored_with_field_key) == SECRET_URL
    assert secrets.decrypt_url(stored_with_derived_key) == SECRET_URL  # set later: older URLs stay readable

    settings.FIELD_ENCRYPTION_KEY = ""
    settings.SECRET_KEY = "a-rotated-secret-key"
    with pytest.raises(secrets.SecretUnreadable, match="^url_encrypted: cannot be decrypted"):
        secrets.decrypt_url(stored_with_derived_key)

    settings.FIELD_ENCRYPTION_KEY = "not-a-fernet-key"
    with pytest.raises(secrets.EncryptionKeyInvalid, match="^FIELD_ENCRYPTION_KEY: key 1 is not a Fernet key"):
        secrets.encrypt_url(SECRET_URL)


def test_a_rotated_secret_key_is_reported_on_the_channel_not_raised(settings, webhook):
    channel = make_channel("ops", webhook.url())
    settings.SECRET_KEY = "a-rotated-secret-key"
    alert_env = alert("queue stuck")
    dispatch.fan_out(alert_env)
    result = dispatch.flush_channel(channel.pk)
    channel.refresh_from_db()
    assert result.outcome == "failed" and channel.last_error.startswith("url_encrypted: cannot be decrypted")
    assert channels.url_source(channel) == "set, but unreadable with the current keys: type it again"
    assert channels.channel_state(channel) == "failing" and webhook.messages() == []


# --- fan-out and the severity filter -----------------------------------------------------------

@pytest.mark.parametrize(("severity", "expected"), [
    ("info", {"all"}),
    ("warning", {"all", "warn"}),
    ("critical", {"all", "warn", "crit"}),
])
def test_an_alert_reaches_the_channels_whose_minimum_it_reaches(severity, expected, webhook):
    make_channel("all", webhook.url(), min_severity="info")
    make_channel("warn", webhook.url(), min_severity="warning")
    make_channel("crit", webhook.url(), min_severity="critical")
    off = make_channel("off", webhook.url(), min_severity="info")
    off.enabled = False
    off.save()
    envelope = alert("x", severity=severity)
    dispatch.fan_out(envelope)
    dispatch.fan_out(envelope)  # the bus delivers at least once: the second changes nothing
    rows = NotificationDelivery.objects.filter(event_id=envelope.event_id)
    assert {d.channel.name for d in rows} == expected and rows.count() == len(expected)


def test_an_alert_arrives_with_its_fields(webhook):
    channel = make_channel("ops", webhook.url())
    envelope = alert("worker-execution missed 3 heartbeats", severity="critical", component="self_healing")
    dispatch.fan_out(envelope)
    assert dispatch.flush_channel(channel.pk).outcome == "sent"
    (msg,) = webhook.messages()
    assert msg["title"] == "[CRITICAL] self_healing" and msg["type"] == "failure" and msg["path"] == "/hook"
    assert "worker-execution missed 3 heartbeats" in msg["message"]
    assert "service: exec-risk-service" in msg["message"] and f"trace_id: {envelope.trace_id}" in msg["message"]
    delivery = NotificationDelivery.objects.get(event_id=envelope.event_id)
    channel.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 1 and delivery.sent_at
    assert channel.last_success_at == delivery.sent_at and channels.channel_state(channel) == "ok"
    assert dispatch.flush_channel(channel.pk).outcome == "idle" and len(webhook.messages()) == 1


# --- rate limit ----------------------------------------------------------------------------

def test_alerts_over_the_rate_limit_wait_and_go_out_batched_never_dropped(webhook, django_capture_on_commit_callbacks):
    channel = make_channel("ops", webhook.url(), max_per_minute=2)
    envelopes = [alert(f"burst alert #{i}", severity="critical" if i == 4 else "warning") for i in range(5)]
    outcomes = []
    with django_capture_on_commit_callbacks() as wakes:
        for e in envelopes:
            dispatch.fan_out(e)
            outcomes.append(dispatch.flush_channel(channel.pk))
    assert [r.outcome for r in outcomes] == ["sent", "sent", "rate_limited", "rate_limited", "rate_limited"]
    assert len(webhook.messages()) == 2
    first_sent = NotificationDelivery.objects.filter(status=DeliveryStatus.SENT).order_by("sent_at")[0].sent_at
    waiting = NotificationDelivery.objects.filter(status=DeliveryStatus.PENDING)
    assert waiting.count() == 3 and {d.next_attempt_at for d in waiting} == {first_sent + timedelta(seconds=60)}
    # one wake-up per alert fanned out, and one (not three) for the slot
    assert len(wakes) == 5 + 1

    # a minute later
    NotificationDelivery.objects.filter(status=DeliveryStatus.SENT).update(sent_at=F("sent_at") - timedelta(seconds=61))
    make_due(channel)
    assert dispatch.flush_channel(channel.pk).outcome == "sent"
    messages = webhook.messages()
    assert len(messages) == 3
    batch = messages[2]
    assert batch["title"] == "3 alerts: 1 critical, 2 warning" and batch["type"] == "failure"
    for e, i in zip(envelopes[2:], range(2, 5), strict=True):
        assert f"burst alert #{i}" in batch["message"] and e.trace_id in batch["message"]
    assert NotificationDelivery.objects.filter(status=DeliveryStatus.SENT).count() == 5


def test_a_batch_that_would_be_too_long_is_split_not_cut(webhook):
    channel = make_channel("ops", webhook.url(), max_per_minute=0)
    for i in range(30):
        dispatch.fan_out(alert(f"alert {i:02d} " + "x" * 200))
    make_due(channel)
    while dispatch.flush_channel(channel.pk).outcome == "sent":
        pass
    messages = webhook.messages()
    assert len(messages) >= 2 and all(len(m["message"]) <= dispatch.BATCH_BODY_MAX_CHARS for m in messages)
    body = "\n".join(m["message"] for m in messages)
    assert all(f"alert {i:02d} " in body for i in range(30))
    assert not NotificationDelivery.objects.exclude(status=DeliveryStatus.SENT).exists()


# --- retries, backoff, failure reports ---------------------------------------------------------

@pytest.mark.parametrize(("attempts", "seconds"), [(1, 5), (2, 15), (3, 45), (4, 135), (5, 405), (6, 600), (20, 600)])
def test_backoff_schedule(attempts, seconds):
    assert dispatch.backoff_seconds(attempts) == seconds


def failure_alerts() -> list[Event]:
    return list(Event.objects.filter(type=EventType.SYSTEM_ALERT.value, payload__component="notifications")
                .order_by("timestamp"))


def test_a_failing_channel_retries_with_backoff_then_reports_once_per_episode(webhook):
    good = make_channel("good", webhook.url())
    dead_url = f"json://127.0.0.1:{refused_port()}/hook"
    bad = make_channel("bad", dead_url)

    first = alert("first", severity="critical")
    dispatch.fan_out(first)
    assert dispatch.flush_channel(good.pk).outcome == "sent"
    before = timezone.now()
    result = dispatch.flush_channel(bad.pk)
    bad.refresh_from_db()
    d1 = NotificationDelivery.objects.get(channel=bad, event_id=first.event_id)
    assert result.outcome == "failed" and d1.attempts == 1 and d1.status == DeliveryStatus.PENDING
    assert before + timedelta(seconds=4.9) < d1.next_attempt_at < timezone.now() + timedelta(seconds=5.1)
    assert "Connection error" in bad.last_error and "127.0.0.1" not in bad.last_error
    assert str(dead_url.split(":")[2].split("/")[0]) not in bad.last_error
    assert bad.last_error_at and channels.channel_state(bad) == "failing"

    # a new alert while the channel waits for its retry joins it instead of trying now
    second = alert("second")
    dispatch.fan_out(second)
    assert dispatch.flush_channel(bad.pk).outcome == "waiting"
    d2 = NotificationDelivery.objects.get(channel=bad, event_id=second.event_id)
    assert d2.attempts == 0 and d2.next_attempt_at == d1.next_attempt_at

    for attempt in range(2, dispatch.MAX_ATTEMPTS + 1):
        make_due(bad)
        assert dispatch.flush_channel(bad.pk).outcome == "failed"
        d1.refresh_from_db()
        assert d1.attempts == attempt
    assert d1.status == DeliveryStatus.FAILED
    d2.refresh_from_db()
    assert d2.status == DeliveryStatus.PENDING and d2.attempts == dispatch.MAX_ATTEMPTS - 1
    (report,) = failure_alerts()
    assert report.payload["severity"] == "critical" and "'bad'" in report.payload["message"]
    assert report.trace_id == first.trace_id and "127.0.0.1" not in report.payload["message"]

    # the report goes to the other channels, not to the failing one
    dispatch.fan_out(_envelope(report))
    assert set(NotificationDelivery.objects.filter(event_id=report.event_id).values_list("channel__name", flat=True)) \
        == {"good"}

    # the second exhaustion in the same episode is not reported again
    make_due(bad)
    assert dispatch.flush_channel(bad.pk).outcome == "failed"
    d2.refresh_from_db()
    assert d2.status == DeliveryStatus.FAILED and len(failure_alerts()) == 1

    # the channel comes back (a success ends the episode) and then fails again: a new report
    channels.apply_url(bad, url=webhook.url("/back"))
    bad.save(update_fields=["url_encrypted", "url_env"])
    dispatch.fan_out(alert("third"))
    assert dispatch.flush_channel(bad.pk).outcome == "sent"
    channels.apply_url(bad, url=dead_url)
    bad.save(update_fields=["url_encrypted", "url_env"])
    dispatch.fan_out(alert("fourth"))
    for _ in range(dispatch.MAX_ATTEMPTS):
        make_due(bad)
        assert dispatch.flush_channel(bad.pk).outcome == "failed"
    assert len(failure_alerts()) == 2


def _envelope(event: Event):
    from qtweb.events.schemas import parse_envelope

    return parse_envelope(event.as_envelope())


def test_failure_reports_never_loop_between_failing_channels():
    """Two dead channels: each one's report would go to the other, which fails too."""
    a = make_channel("a", f"json://127.0.0.1:{refused_port()}/hook")
    b = make_channel("b", f"json://127.0.0.1:{refused_port()}/hook")
    dispatch.fan_out(alert("disk full", severity="critical"))
    for _ in range(dispatch.MAX_ATTEMPTS):
        for c in (a, b):
            make_due(c)
            dispatch.flush_channel(c.pk)
    reports = failure_alerts()
    assert len(reports) == 2
    for report in reports:  # both channels are failing: neither is sent a report
        assert dispatch.fan_out(_envelope(report)) == []
    assert not NotificationDelivery.objects.filter(event_id__in=[r.event_id for r in reports]).exists()


def test_a_channel_that_hangs_is_abandoned_at_its_timeout(monkeypatch):
    monkeypatch.setattr(dispatch, "SEND_TIMEOUT_SECONDS", 1.0)  # the module's own bound, not the URL's
    slow = WebhookServer(delay_seconds=8)
    try:
        dispatch.send_message(slow.url(), title="warm", body="b", severity=Severity.INFO)  # plugin load
        started = time.monotonic()
        error = dispatch.send_message(slow.url(), title="t", body="b", severity=Severity.INFO)
        assert time.monotonic() - started < 6 and error
    finally:
        slow.close()


def test_the_sweep_wakes_channels_with_due_deliveries_only(webhook, django_capture_on_commit_callbacks):
    due = make_channel("due", webhook.url())
    later = make_channel("later", webhook.url())
    off = make_channel("off", webhook.url())
    dispatch.fan_out(alert("x"))
    NotificationDelivery.objects.filter(channel=later).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    NotificationChannel.objects.filter(pk=off.pk).update(enabled=False)
    with django_capture_on_commit_callbacks() as wakes:
        assert dispatch.sweep() == 1
    assert len(wakes) == 1
    assert dispatch.flush_channel(due.pk).outcome == "sent"
    assert dispatch.flush_channel(off.pk).outcome == "disabled"
    assert dispatch.flush_channel(later.pk).outcome == "idle"


# --- channels from the environment ---------------------------------------------------------------

def test_notify_channels_are_parsed_with_each_bad_entry_named():
    parsed, errors = channels.parse_env_channels(
        "ops=NOTIFY_URL_OPS:critical, pager = NOTIFY_URL_PAGER ,oops,x=NOTIFY_URL_X:loud,"
        "bad name=NOTIFY_URL_Y,y=1ABC,z=SECRET_KEY",
        default_severity=Severity.WARNING)
    assert [(c.name, c.url_env, c.min_severity) for c in parsed] == [
        ("ops", "NOTIFY_URL_OPS", Severity.CRITICAL), ("pager", "NOTIFY_URL_PAGER", Severity.WARNING)]
    assert errors == [
        "NOTIFY_CHANNELS: 'oops' is not name=ENV_VAR[:min_severity]",
        "NOTIFY_CHANNELS: x: min_severity: 'loud' is not a severity (info, warning or critical)",
        "NOTIFY_CHANNELS: channel name 'bad name' must be letters, digits, _ . - (up to 64)",
        "NOTIFY_CHANNELS: y: url_env: '1ABC' is not an environment variable name (letters, digits, _)",
        "NOTIFY_CHANNELS: z: url_env: 'SECRET_KEY': a channel's variable must be named NOTIFY_URL_<something> "
        "(e.g. NOTIFY_URL_TELEGRAM), so no other secret can be sent out",
    ]


def test_channels_from_the_environment_are_synced_and_read_their_url_there(settings, monkeypatch, webhook):
    settings.NOTIFY_CHANNELS = "oncall=NOTIFY_URL_TEST_ONCALL:critical,ops=NOTIFY_URL_TEST_OPS"
    settings.NOTIFY_MIN_SEVERITY = "info"
    monkeypatch.setenv("NOTIFY_URL_TEST_ONCALL", webhook.url("/oncall"))
    monkeypatch.delenv("NOTIFY_URL_TEST_OPS", raising=False)
    envelope = alert("exchange unreachable", severity="critical")
    dispatch.fan_out(envelope)  # syncs NOTIFY_CHANNELS first
    oncall, ops = NotificationChannel.objects.get(name="oncall"), NotificationChannel.objects.get(name="ops")
    assert (oncall.url_env, oncall.min_severity, oncall.url_encrypted) == ("NOTIFY_URL_TEST_ONCALL", "critical", "")
    assert ops.min_severity == "info"
    assert channels.url_source(oncall) == "from $NOTIFY_URL_TEST_ONCALL (json://…)"
    assert channels.url_source(ops) == "from $NOTIFY_URL_TEST_OPS (not set in this process)"
    assert dispatch.flush_channel(oncall.pk).outcome == "sent"
    assert webhook.messages()[0]["path"] == "/oncall"
    assert dispatch.flush_channel(ops.pk).outcome == "failed"
    ops.refresh_from_db()
    assert ops.last_error == "url_env: $NOTIFY_URL_TEST_OPS is not set in this process's environment"

    # the setting decides the variable and the severity; enabling and the rate limit stay the operator's
    NotificationChannel.objects.filter(pk=oncall.pk).update(enabled=False, max_per_minute=1)
    settings.NOTIFY_CHANNELS = "oncall=NOTIFY_URL_TEST_PAGER:warning"
    channels.sync_env_channels()
    oncall.refresh_from_db()
    assert (oncall.url_env, oncall.min_severity, oncall.enabled, oncall.max_per_minute) == \
        ("NOTIFY_URL_TEST_PAGER", "warning", False, 1)


# --- URL validation, the admin and the API --------------------------------------------------------

@pytest.mark.parametrize(("url", "message"), [
    ("foo://bar/baz", "url: not an Apprise URL Apprise can send to (scheme 'foo')"),
    ("hooks.example.com/abc", "url: not an Apprise URL (expected scheme://..., e.g. json://host/path, tgram://...)"),
    ("  ", "url: empty"),
])
def test_a_url_apprise_cannot_send_to_is_refused_with_the_field_named(url, message, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(channels.ChannelConfigError) as info:
        channels.validate_url(url)
    assert info.value.field == "url" and str(info.value) == message
    assert "bar/baz" not in caplog.text  # Apprise logs an unparseable URL in full


@pytest.fixture
def viewer(client):
    get_user_model().objects.create_user("viewer", password="pw-123456")
    client.login(username="viewer", password="pw-123456")
    return client


SECRET_HOOK = "json://127.0.0.1:9/hooks/T0KEN-abc123/xyzSIGN987"


def test_the_api_stores_the_url_encrypted_and_never_returns_it(admin_client, viewer):
    r = admin_client.post("/api/notifications/channels/", {"name": "ops", "url": SECRET_HOOK,
                                                          "min_severity": "critical", "max_per_minute": 3},
                          content_type="application/json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert "url" not in body and "url_encrypted" not in body and "T0KEN" not in r.content.decode()
    assert body["url_source"] == "set (json://…)" and body["min_severity"] == "critical" and body["state"] == "unused"
    channel = NotificationChannel.objects.get(name="ops")
    assert "T0KEN" not in channel.url_encrypted and channels.resolve_url(channel) == SECRET_HOOK

    listed = viewer.get("/api/notifications/channels/")
    assert listed.status_code == 200 and "T0KEN" not in listed.content.decode()
    assert viewer.post("/api/notifications/channels/", {"name": "x", "url": SECRET_HOOK},
                       content_type="application/json").status_code == 403

    # a change without url keeps the stored one; a URL Apprise cannot use is refused by name
    r = admin_client.patch(f"/api/notifications/channels/{channel.pk}/", {"max_per_minute": 10},
                           content_type="application/json")
    assert r.status_code == 200 and channels.resolve_url(NotificationChannel.objects.get(pk=channel.pk)) == SECRET_HOOK
    r = admin_client.patch(f"/api/notifications/channels/{channel.pk}/", {"url": "foo://nope"},
                           content_type="application/json")
    assert r.status_code == 400
    assert r.json() == {"url": ["url: not an Apprise URL Apprise can send to (scheme 'foo')"]}
    r = admin_client.post("/api/notifications/channels/", {"name": "none"}, content_type="application/json")
    assert r.status_code == 400 and "url: required" in r.json()["url"][0]
    r = admin_client.post("/api/notifications/channels/", {"name": "env", "url_env": "NOTIFY_URL_HOOK"},
                          content_type="application/json")
    assert r.status_code == 201 and r.json()["url_source"] == "from $NOTIFY_URL_HOOK (not set in this process)"


def test_deliveries_are_listed_for_signed_in_users(viewer, admin_client, webhook):
    from django.test import Client

    channel = make_channel("ops", webhook.url())
    envelope = alert("disk 91% full")
    dispatch.fan_out(envelope)
    assert Client().get("/api/notifications/deliveries/").status_code in (401, 403)
    rows = viewer.get("/api/notifications/deliveries/", {"channel": "ops", "status": "pending"}).json()["results"]
    assert [(d["channel_name"], d["event_id"], d["trace_id"]) for d in rows] == \
        [("ops", str(envelope.event_id), envelope.trace_id)]
    assert viewer.get("/api/notifications/deliveries/", {"status": "sent"}).json()["results"] == []
    assert viewer.post(f"/api/notifications/channels/{channel.pk}/test/").status_code == 403
    r = admin_client.post(f"/api/notifications/channels/{channel.pk}/test/")
    assert r.status_code == 202 and r.json()["title"] == "[INFO] notifications: test"


def test_the_admin_takes_the_url_once_and_never_renders_it(admin_client):
    page = admin_client.get("/admin/analytics/notificationchannel/add/")
    assert page.status_code == 200 and 'type="password"' in page.content.decode()
    r = admin_client.post("/admin/analytics/notificationchannel/add/", {
        "name": "bad", "url": "foo://T0KEN-abc123", "url_env": "", "min_severity": "warning", "max_per_minute": 6,
        "enabled": "on"})
    html = r.content.decode()
    assert r.status_code == 200 and "url: not an Apprise URL Apprise can send to (scheme &#x27;foo&#x27;)" in html
    assert "T0KEN" not in html  # not even the rejected value is echoed

    r = admin_client.post("/admin/analytics/notificationchannel/add/", {
        "name": "ops", "url": SECRET_HOOK, "url_env": "", "min_severity": "warning", "max_per_minute": 6,
        "enabled": "on"})
    assert r.status_code == 302, r.content.decode()[:3000]
    channel = NotificationChannel.objects.get(name="ops")
    for path in (f"/admin/analytics/notificationchannel/{channel.pk}/change/", "/admin/analytics/notificationchannel/"):
        html = admin_client.get(path).content.decode()
        assert "T0KEN" not in html and "xyzSIGN" not in html and "json://…" in html
    r = admin_client.post(f"/admin/analytics/notificationchannel/{channel.pk}/change/", {
        "name": "ops", "url": "", "url_env": "", "min_severity": "critical", "max_per_minute": 2, "enabled": "on"})
    assert r.status_code == 302
    channel.refresh_from_db()
    assert channel.min_severity == "critical" and channels.resolve_url(channel) == SECRET_HOOK


def test_failed_deliveries_can_be_sent_again_from_the_admin(admin_client, webhook):
    channel = make_channel("ops", webhook.url())
    dispatch.fan_out(alert("x"))
    NotificationDelivery.objects.update(status=DeliveryStatus.FAILED, attempts=dispatch.MAX_ATTEMPTS)
    delivery = NotificationDelivery.objects.get()
    with transaction.atomic():
        r = admin_client.post("/admin/analytics/notificationdelivery/", {
            "action": "retry_selected", "_selected_action": [delivery.pk]})
    assert r.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    assert dispatch.flush_channel(channel.pk).outcome == "sent" and len(webhook.messages()) == 1
