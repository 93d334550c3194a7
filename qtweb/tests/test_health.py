"""Health rules (pure), the public endpoints, and the health monitor's events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qtweb.health import status as health
from qtweb.health.models import WorkerHeartbeat

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass
class Beat:
    service: str
    queue: str
    worker: str
    last_seen: datetime
    stopped_at: datetime | None = None
    pid: int = 1
    stats: dict = field(default_factory=dict)


def all_fresh(age_s=1.0):
    t = NOW - timedelta(seconds=age_s)
    return [
        Beat("ai-service", "inference", "inference@h", t),
        Beat("exec-risk-service", "execution", "execution@h", t),
        Beat("analytics-os-service", "learning", "learning@h", t),
        Beat("analytics-os-service", "ops", "ops@h", t),
    ]


def test_all_queues_beating_is_healthy():
    out = health.evaluate_services(all_fresh(), NOW, 15)
    assert {s["status"] for s in out.values()} == {"HEALTHY"}
    assert out["ai-service"]["last_heartbeat_age_seconds"] == 1.0


@pytest.mark.parametrize(
    ("age", "expected"), [(14.9, "HEALTHY"), (15.0, "HEALTHY"), (15.1, "CRITICAL"), (600, "CRITICAL")]
)
def test_a_stale_queue_makes_its_service_critical_and_only_it(age, expected):
    beats = all_fresh()
    beats[3].last_seen = NOW - timedelta(seconds=age)  # analytics ops
    out = health.evaluate_services(beats, NOW, 15)
    assert out["analytics-os-service"]["status"] == expected
    assert out["ai-service"]["status"] == "HEALTHY"
    if expected == "CRITICAL":
        assert "ops" in out["analytics-os-service"]["reason"]


def test_a_cleanly_stopped_worker_counts_as_gone_but_a_sibling_keeps_the_queue_up():
    beats = all_fresh()
    beats[0].stopped_at = NOW
    assert health.evaluate_services(beats, NOW, 15)["ai-service"]["status"] == "CRITICAL"
    beats.append(Beat("ai-service", "inference", "inference@other", NOW))
    assert health.evaluate_services(beats, NOW, 15)["ai-service"]["status"] == "HEALTHY"


def test_a_disabled_service_reads_disabled_not_critical():
    out = health.evaluate_services(all_fresh()[:1], NOW, 15, frozenset({"exec-risk-service"}))
    assert out["exec-risk-service"]["status"] == "DISABLED"
    assert "EXEC_RISK_SERVICE_ENABLED" in out["exec-risk-service"]["reason"]
    assert health.overall({"database": {"status": "HEALTHY"}, "redis": {"status": "HEALTHY"}},
                          {"exec-risk-service": out["exec-risk-service"]})[0] == "HEALTHY"


def test_a_service_that_never_reported_is_critical():
    out = health.evaluate_services(all_fresh()[:1], NOW, 15)
    assert out["exec-risk-service"]["status"] == "CRITICAL"


def test_overall_status_rules():
    ok = {"status": "HEALTHY"}
    assert health.overall({"database": ok, "redis": ok}, {"a": {"status": "HEALTHY", "reason": ""}})[0] == "HEALTHY"
    assert health.overall({"database": ok, "redis": ok}, {"a": {"status": "DEGRADED", "reason": "x"}})[0] == "DEGRADED"
    status, reasons = health.overall({"database": ok, "redis": {"status": "CRITICAL", "error": "refused"}}, None)
    assert status == "CRITICAL" and reasons == ["redis: refused"]


@pytest.mark.django_db
def test_web_health_is_public_and_has_the_design_shape(client, clean_cache):
    WorkerHeartbeat.objects.create(
        worker="inference@h",
        service="ai-service",
        queue="inference",
        host="h",
        pid=1,
        started_at=datetime.now(UTC),
        last_seen=datetime.now(UTC),
    )
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert {"service", "status", "uptime_seconds", "timestamp", "dependencies", "modules", "services"} <= set(body)
    assert body["service"] == "web"
    assert body["dependencies"]["database"]["status"] == "HEALTHY"
    assert body["dependencies"]["redis"]["status"] == "HEALTHY"
    assert body["status"] == "DEGRADED"  # only one of four queues reports
    assert body["services"]["ai-service"]["status"] == "HEALTHY"
    assert body["services"]["ai-service"]["last_heartbeat_age_seconds"] < 5
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


@pytest.mark.django_db
def test_web_health_is_503_when_redis_is_unreachable(client, settings, monkeypatch):
    import redis

    monkeypatch.setattr(health, "_redis_client", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    resp = client.get("/health")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "CRITICAL"
    assert body["dependencies"]["redis"]["status"] == "CRITICAL"
    assert any(r.startswith("redis:") for r in body["reasons"])


@pytest.mark.django_db
def test_metrics_are_valid_prometheus_text(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    names = {f.name for f in text_string_to_metric_families(resp.content.decode())}
    assert {"service_uptime_seconds", "queue_depth", "events_published", "rpc_calls"} <= names


@pytest.mark.django_db
def test_metrics_token_when_configured(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.django_db
def test_api_and_dashboard_require_login(client):
    assert client.get("/api/events/").status_code in (401, 403)
    assert client.get("/api/traces/abcdef123456/").status_code in (401, 403)
    assert client.get("/api/schema/").status_code in (401, 403)
    resp = client.get("/")
    assert resp.status_code == 302 and "/accounts/login/" in resp["Location"]


@pytest.mark.django_db
def test_trace_api_validates_and_404s(admin_client):
    assert admin_client.get("/api/traces/bad!id/").status_code == 400
    assert admin_client.get("/api/traces/abcdef123456/").status_code == 404


@pytest.mark.django_db
def test_http_requests_carry_a_trace_id(client):
    resp = client.get("/health", headers={"X-Trace-Id": "caller-trace-0001"})
    assert resp["X-Trace-Id"] == "caller-trace-0001"
    fresh = client.get("/health", headers={"X-Trace-Id": "bad id!"})["X-Trace-Id"]
    assert fresh != "bad id!" and len(fresh) == 32
