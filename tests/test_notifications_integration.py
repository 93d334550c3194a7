"""Operator notifications end to end: a system.alert published on the bus reaches a JSON webhook on
loopback through the real ops worker (outbox -> subscriber -> delivery rows -> one send task per
channel -> Apprise), and channels that fail (a refused port, an HTTP 500) delay no other channel."""
from __future__ import annotations

import time

import pytest
from django.db import transaction

from analytics.models import DeliveryStatus, NotificationChannel, NotificationDelivery
from analytics.notifications import channels, dispatch
from analytics.tests.test_notifications import WebhookServer, refused_port
from qtweb import tracing
from qtweb.events import EventType, publish
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# From the publishing commit to the webhook's receipt, through the outbox, the ops worker's
# subscriber and the send task: measured at 0.1-0.3 s here; a failing channel must not add to it.
ARRIVES_WITHIN_SECONDS = 5.0


@pytest.fixture
def servers():
    good, broken = WebhookServer(), WebhookServer(status=500)
    yield good, broken
    good.close()
    broken.close()


def make_channel(name: str, url: str) -> NotificationChannel:
    channel = NotificationChannel(name=name, min_severity="info", max_per_minute=60)
    channels.apply_url(channel, url=url)
    channel.save()
    return channel


def publish_alert(message: str, *, component: str = "self_healing", severity: str = "critical"):
    with transaction.atomic():
        envelope = publish(EventType.SYSTEM_ALERT, {"severity": severity, "component": component,
                                                    "service": "exec-risk-service", "message": message},
                           source="analytics-os-service", trace_id=tracing.new_trace_id())
    return envelope, time.monotonic()


def test_alerts_reach_the_webhook_and_failing_channels_delay_none(celery_workers, servers):
    good, broken = servers
    # Named so that the failing channels sort first: on a fresh start they are flushed before the good one.
    refused = make_channel("a-refused", f"json://127.0.0.1:{refused_port()}/hook")
    five_hundred = make_channel("b-http-500", broken.url("/broken"))
    ops = make_channel("c-good", good.url("/ops"))
    # A worker that has been up a while: the beat sweep has loaded Apprise's plugins (0.5-2 s, once
    # per process). No beat runs here, so a test message does it, through the same pipeline.
    with transaction.atomic():
        dispatch.send_test(ops)
    assert good.wait_for(lambda m: m["title"] == "[INFO] notifications: test", timeout=20)
    assert not broken.messages()  # the test message went to its channel only

    latencies = []
    for i in range(3):
        envelope, published_at = publish_alert(f"restarted worker-execution (attempt {i + 1})")
        msg = good.wait_for(lambda m, e=envelope: e.trace_id in m.get("message", ""), timeout=10)
        assert msg is not None, f"alert {i + 1} did not reach the webhook"
        latencies.append(msg["received_at"] - published_at)
        assert msg["title"] == "[CRITICAL] self_healing" and msg["type"] == "failure" and msg["path"] == "/ops"
        assert f"restarted worker-execution (attempt {i + 1})" in msg["message"]
        assert "service: exec-risk-service" in msg["message"]
        assert f"trace_id: {envelope.trace_id}" in msg["message"]
        assert f"event: {envelope.event_id}" in msg["message"]
        if i == 0:  # the failing channels have failed their first try by now and wait for their retry
            assert wait_for(lambda: all(NotificationChannel.objects.get(pk=c.pk).last_error_at
                                        for c in (refused, five_hundred)), timeout=5)
    print(f"alert -> webhook: {', '.join(f'{s:.3f}' for s in latencies)} s")
    assert max(latencies) < ARRIVES_WITHIN_SECONDS, latencies
    assert len(good.messages()) == 1 + 3  # one message per alert, none repeated

    # the failures are recorded, without the URL, and the alerts wait for their retry (none lost)
    assert broken.messages() and all(m["path"] == "/broken" for m in broken.messages())
    for channel in (refused, five_hundred):
        channel.refresh_from_db()
        assert channels.channel_state(channel) == "failing"
        assert "127.0.0.1" not in channel.last_error and "/broken" not in channel.last_error
        waiting = NotificationDelivery.objects.filter(channel=channel)
        assert waiting.count() == 3 and set(waiting.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
        assert max(waiting.values_list("attempts", flat=True)) >= 1
    refused.refresh_from_db()
    five_hundred.refresh_from_db()
    assert "Connection error" in refused.last_error
    assert "500" in five_hundred.last_error

    # a report about the notifications themselves is not sent to the channels that are failing
    envelope, _ = publish_alert("notification channel 'a-refused' failed 6 times", component="notifications",
                                severity="warning")
    assert good.wait_for(lambda m: envelope.trace_id in m.get("message", ""), timeout=10)
    assert list(NotificationDelivery.objects.filter(event_id=envelope.event_id)
                .values_list("channel__name", flat=True)) == ["c-good"]

    # the retries are the workers' business; stop them before the database is flushed
    NotificationChannel.objects.filter(pk__in=[refused.pk, five_hundred.pk]).update(enabled=False)
