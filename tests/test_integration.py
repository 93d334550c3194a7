"""The platform working together: real workers on all four queues, PostgreSQL, Redis."""
from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qtweb import rpc, tracing
from qtweb.events.bus import wait_until_handled
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from qtweb.health.models import WorkerHeartbeat
from tests.support.tasks import publish_probe
from tests.support.waiting import wait_for
from tests.support.workers import TEST_HEALTH_PORTS

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _probe_entries(redis_conn, probe_id: str) -> list[dict]:
    return [json.loads(x) for x in redis_conn.lrange(f"probe:{probe_id}", 0, -1)]



def test_event_published_on_one_queue_reaches_subscribers_on_other_queues_with_same_trace_id(
    celery_workers, redis_conn
):
    probe_id = uuid.uuid4().hex
    with tracing.trace() as trace_id:
        publish_probe.apply_async(args=(probe_id,), queue="ops")  # runs on the ops worker, publishes from there

    entries = wait_for(lambda: len(_probe_entries(redis_conn, probe_id)) >= 3 and _probe_entries(redis_conn, probe_id),
                    timeout=15)
    by_sub = {e["subscriber"]: e for e in entries}
    assert set(by_sub) == {"probe.inference", "probe.learning", "probe.execution"}
    for sub, entry in by_sub.items():
        assert entry["envelope_trace_id"] == trace_id, sub
        assert entry["context_trace_id"] == trace_id, sub  # via the Celery header, into the handler
    assert by_sub["probe.inference"]["worker"] == "inference@test"
    assert by_sub["probe.learning"]["worker"] == "learning@test"

    event = Event.objects.get(trace_id=trace_id, type="platform.probe")
    assert event.source == "analytics-os-service"  # published from the ops worker
    assert wait_until_handled(event.event_id, timeout=10)
    subs = set(EventDelivery.objects.filter(event=event).values_list("subscriber", flat=True))
    assert {"analytics.observer", "probe.inference", "probe.learning", "probe.execution"} == subs


def test_ping_answers_from_every_service(celery_workers):
    workers = {}
    for service in ("ai", "exec-risk", "analytics"):
        reply = rpc.call(service, "ping", timeout=5, retries=1)
        workers[reply["service"]] = reply["worker"]
    assert workers == {
        "ai-service": "inference@test",
        "exec-risk-service": "execution@test",
        "analytics-os-service": "ops@test",
    }


def test_heartbeat_appears_within_10_seconds_of_worker_start(celery_workers):
    node = f"inference@hb-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    celery_workers.start("inference", name=node)
    try:
        row = wait_for(lambda: WorkerHeartbeat.objects.filter(worker=node).first(), timeout=12, poll=0.2)
        took = time.monotonic() - started
        assert row is not None, "no heartbeat row"
        assert took <= 10, f"first heartbeat after {took:.1f}s"
        assert row.service == "ai-service" and row.queue == "inference"
        assert row.stats["rss_mb"] > 0
        assert Event.objects.filter(type="service.heartbeat", payload__worker=node).exists()
    finally:
        celery_workers.stop(node)
    # a clean stop is recorded at once
    assert WorkerHeartbeat.objects.get(worker=node).stopped_at is not None


def test_metrics_parse_with_prometheus_parser_on_web_and_worker_ports(celery_workers, client):
    rpc.call("analytics", "ping", timeout=5)
    with tracing.trace():
        publish_probe.apply_async(args=(uuid.uuid4().hex,), queue="ops")
    time.sleep(1.5)

    web = client.get("/metrics")
    assert web.status_code == 200
    web_names = {f.name for f in text_string_to_metric_families(web.content.decode())}
    assert {"rpc_calls", "service_uptime_seconds", "queue_depth", "outbox_deliveries"} <= web_names

    port = TEST_HEALTH_PORTS["ops"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"events_consumed", "events_published", "task_duration_seconds", "service_uptime_seconds"} <= set(families)
    consumed = [s for s in families["events_consumed"].samples
                if s.labels.get("type") == "platform.probe" and s.name == "events_consumed_total"]
    assert consumed and consumed[0].value >= 1


def test_worker_health_port_reports_the_service(celery_workers):
    port = TEST_HEALTH_PORTS["execution"]
    body = wait_for(lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()),
                 timeout=5)
    assert body["service"] == "exec-risk-service"
    assert body["status"] in {"HEALTHY", "DEGRADED"}
    assert set(body) >= {"service", "status", "uptime_seconds", "timestamp", "dependencies", "modules"}
    assert body["dependencies"]["database"]["status"] == "HEALTHY"


def test_trace_lookup_lists_a_flows_events_in_order(celery_workers, admin_client):
    probe_id = uuid.uuid4().hex
    with tracing.trace() as trace_id:
        publish_probe.apply_async(args=(probe_id,), queue="ops")
        publish_probe.apply_async(args=(probe_id + "-2",), queue="ops")
    wait_for(lambda: Event.objects.filter(trace_id=trace_id).count() >= 2, timeout=10)

    resp = admin_client.get(f"/api/traces/{trace_id}/")
    assert resp.status_code == 200
    events = resp.json()["events"]
    assert [e["trace_id"] for e in events] == [trace_id] * len(events)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(d["status"] in {s.value for s in DeliveryStatus} for e in events for d in e["deliveries"])

    admin_page = admin_client.get(f"/admin/qtweb/event/?trace_id={trace_id}")
    assert admin_page.status_code == 200
    assert trace_id in admin_page.content.decode()


def test_the_feed_task_runs_on_the_execution_worker_and_publishes_bars(celery_workers, redis_conn):
    from qtweb.events.models import Event
    from trading.marketdata import timeframes
    from trading.simulator.service import seed_history
    from trading.tasks import poll_feed

    for key in redis_conn.scan_iter("*feed:announced:*"):
        redis_conn.delete(key)
    now = int(time.time() * 1000)
    seeded = seed_history(days=1, seed=5, now_ms=timeframes.floor_ms(now, "5m") - 3 * 300_000, speed_factor=1.0)
    with tracing.trace() as trace_id:
        poll_feed.apply_async()  # routed to the execution queue by its trading. prefix
    bars = wait_for(lambda: Event.objects.filter(type="market.bar", trace_id=trace_id).count()
                    >= 3 * seeded.symbols, timeout=30, poll=0.2)
    assert bars, "no market.bar events from the worker"
    sample = Event.objects.filter(type="market.bar", trace_id=trace_id).first()
    assert sample.source == "exec-risk-service"
    assert wait_until_handled(sample.event_id, timeout=10)  # the analytics observer consumed it


def test_get_signal_answers_over_rpc_from_the_inference_worker_within_two_seconds(celery_workers, settings,
                                                                                    tmp_path):
    from io import StringIO

    from django.core.management import call_command

    from trading.simulator.service import seed_history

    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")  # artifacts by absolute path: the worker reads them
    seed_history(days=2, seed=4)
    call_command("train_models", "--max-epochs", "1", "--bars", "400", "--sample-every", "8", stdout=StringIO())
    warm = rpc.call("ai", "get_signal", {"symbol": "BTC/USDT:USDT"}, timeout=60, retries=0)  # loads the models
    assert warm["signal"]["models_voted"] == 4, warm
    t0 = time.monotonic()
    reply = rpc.call("ai", "get_signal", {"symbol": "ETH/USDT:USDT"}, timeout=2.0, retries=0)
    took = time.monotonic() - t0
    assert reply["signal"]["models_voted"] == 4 and reply["signal"]["action"] in {"BUY", "SELL", "HOLD"}
    assert took < 2.0, f"get_signal took {took:.2f}s"
    with pytest.raises(rpc.RpcBadParams, match="NOPE/USDT"):
        rpc.call("ai", "get_signal", {"symbol": "NOPE/USDT"}, timeout=5, retries=0)


def test_position_closed_reaches_the_learning_worker_and_is_stored_once(celery_workers):
    """RL sizing experience: position.closed is consumed on the learning queue, once per position."""
    from ai.models import RlExperience
    from qtweb.events.bus import publish

    payload = {"position_id": "pos-int-1", "symbol": "BTC/USDT", "side": "long", "amount": "0.01",
               "entry_price": "50000", "exit_price": "51250", "pnl_usd": "12.5", "fees_usd": "0.5",
               "exit_reason": "take_profit"}
    first = publish("position.closed", payload, trace_id="trace-closed-int1")
    second = publish("position.closed", payload, trace_id="trace-closed-int2")  # a duplicate report
    assert wait_until_handled(first.event_id, timeout=20) and wait_until_handled(second.event_id, timeout=20)
    assert wait_for(lambda: RlExperience.objects.filter(position_id="pos-int-1").exists(), timeout=5)
    assert RlExperience.objects.filter(position_id="pos-int-1").count() == 1
    queues = set(EventDelivery.objects.filter(subscriber="ai.sizing.record_experience").values_list("queue", flat=True))
    assert queues == {"learning"}
