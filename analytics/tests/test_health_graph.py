"""The health graph: the pure rule (assess), and the monitor's pass with real PostgreSQL and Redis."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics.health import graph as g

QUEUES = {"inference": "ai-service", "execution": "exec-risk-service", "learning": "analytics-os-service",
          "ops": "analytics-os-service"}
SERVICES = ("ai-service", "exec-risk-service", "analytics-os-service")


def beats(**ages):
    return [{"worker": f"{q}@h", "service": s, "queue": q, "host": "h", "pid": 10 + i,
             "heartbeat_age_seconds": ages.get(q, 1.0), "shut_down": False, "started_at": "2026-01-01T00:00:00+00:00",
             "stats": {"memory_percent": 2.0}} for i, (q, s) in enumerate(QUEUES.items())]


def assess(heartbeats=None, *, backlog=None, modules=None, enabled=None, deps=None, memory=85.0):
    return g.assess(heartbeats=beats() if heartbeats is None else heartbeats, backlog=backlog or {},
                    dependencies=deps or {"database": {"status": "HEALTHY"}, "redis": {"status": "HEALTHY"}},
                    modules=modules or {}, enabled=enabled or dict.fromkeys(SERVICES, True),
                    shadow=dict.fromkeys(SERVICES, False), stale_seconds=15.0, memory_threshold_pct=memory,
                    stuck_after={"inference": 180.0, "execution": 180.0, "learning": 3900.0, "ops": 180.0})


def test_all_beating_is_healthy():
    out = assess()
    assert out["status"] == "HEALTHY" and out["reasons"] == []
    assert {s["status"] for s in out["services"].values()} == {"HEALTHY"}
    assert out["queues"]["inference"]["live_workers"] == ["inference@h"]


@pytest.mark.parametrize(("age", "status"),
                         [(14.9, "HEALTHY"), (15.0, "HEALTHY"), (15.1, "CRITICAL"), (900, "CRITICAL")])
def test_a_missing_heartbeat_is_critical_past_15_seconds(age, status):
    out = assess(beats(inference=age))
    assert out["queues"]["inference"]["status"] == status
    assert out["services"]["ai-service"]["status"] == status
    assert out["services"]["exec-risk-service"]["status"] == "HEALTHY"
    assert out["status"] == status
    if status == "CRITICAL":
        assert "no heartbeat within 15s" in out["queues"]["inference"]["reasons"][0]


@pytest.mark.parametrize(("queue", "oldest", "status"), [
    ("inference", 179.0, "HEALTHY"), ("inference", 181.0, "CRITICAL"),
    # a retraining job may hold the learning worker for its whole time limit
    ("learning", 3000.0, "HEALTHY"), ("learning", 3901.0, "CRITICAL"),
])
def test_a_queue_whose_oldest_message_ages_while_its_worker_beats_is_stuck(queue, oldest, status):
    out = assess(backlog={queue: {"depth": 3, "oldest_age_seconds": oldest}})
    assert out["queues"][queue]["status"] == status
    if status == "CRITICAL":
        assert out["queues"][queue]["reasons"][0].startswith("stuck:")


def test_memory_over_the_threshold_degrades_the_worker_and_its_service():
    hb = beats()
    hb[0]["stats"]["memory_percent"] = 91.0
    out = assess(hb)
    assert out["workers"]["inference@h"]["status"] == "DEGRADED"
    assert out["services"]["ai-service"]["status"] == "DEGRADED"
    assert "memory 91.0% > 85%" in out["services"]["ai-service"]["reasons"][0]


def test_a_failing_module_degrades_its_service():
    out = assess(modules={"ai-service": {"model:xgboost": {"status": "DEGRADED", "reason": "dropped"},
                                         "model:lightgbm": {"status": "HEALTHY", "reason": "ok"}}})
    assert out["services"]["ai-service"]["status"] == "DEGRADED"
    assert out["services"]["ai-service"]["reasons"] == ["model:xgboost: dropped"]


def test_a_disabled_service_is_disabled_and_does_not_degrade_the_system():
    out = assess([b for b in beats() if b["queue"] != "execution"],
                 enabled={**dict.fromkeys(SERVICES, True), "exec-risk-service": False})
    assert out["services"]["exec-risk-service"]["status"] == "DISABLED"
    assert out["queues"]["execution"]["status"] == "DISABLED"
    assert out["status"] == "HEALTHY"


def test_a_dependency_down_makes_the_system_critical():
    out = assess(deps={"database": {"status": "HEALTHY"}, "redis": {"status": "CRITICAL", "error": "refused"}})
    assert out["status"] == "CRITICAL" and out["reasons"] == ["redis: refused"]


def test_a_queue_never_reported_and_one_shut_down_say_which():
    hb = beats()
    hb[1]["shut_down"] = True
    out = assess([b for b in hb if b["queue"] != "inference"])
    assert out["queues"]["inference"]["reasons"] == ["no worker has ever reported"]
    assert out["queues"]["execution"]["reasons"] == ["no live worker (execution@h shut down)"]


def test_components_cover_every_part():
    comps = g.components(assess(modules={"ai-service": {"model:x": {"status": "HEALTHY", "reason": ""}}}))
    assert {"system", "dependency:redis", "queue:ops", "worker:ops@h", "service:ai-service",
            "module:ai-service/model:x"} <= set(comps)


# --- the monitor's pass, on real PostgreSQL and Redis ---

@pytest.fixture
def monitor_world(db, settings, clean_cache):
    from analytics.health import monitor
    from analytics.models import AlertRule
    from qtweb.health.models import WorkerHeartbeat

    settings.PROCESS_MANAGER = "none"
    settings.SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS = 0  # act on the first CRITICAL pass
    # Broker messages other tests left behind would make a queue "stuck"; the stuck rule has its
    # own tests above.
    settings.QUEUE_STUCK_SECONDS = 10**9
    AlertRule.objects.all().delete()  # this test is about the graph, not the rules
    from django.core.cache import cache

    cache.delete(monitor._CACHE_KEY)
    cache.delete(g.CACHE_KEY)
    now = datetime.now(UTC)
    for q, svc in QUEUES.items():
        WorkerHeartbeat.objects.create(worker=f"{q}@h", service=svc, queue=q, host="h", pid=1, started_at=now,
                                       last_seen=now, stats={"memory_percent": 1.0})
    return monitor


def test_the_monitor_stores_the_graph_records_transitions_and_alerts_critical(monitor_world):
    from analytics.models import HealingAction, HealthTransition
    from qtweb.events.models import Event
    from qtweb.health.models import WorkerHeartbeat

    monitor = monitor_world
    first = monitor.evaluate()
    assert first["published"] and set(first["statuses"].values()) == {"HEALTHY"}
    assert g.latest()["status"] == "HEALTHY"
    assert not Event.objects.filter(type="system.alert").exists()  # no transition on first sight
    first_seen = set(HealthTransition.objects.values_list("component", flat=True))
    # Services, dependencies and the system are remembered from the first sight (what a later
    # outage is compared with once the cached graph is lost); queues and workers only on change.
    assert first_seen == {"system", "dependency:database", "dependency:redis", "service:ai-service",
                          "service:exec-risk-service", "service:analytics-os-service"}
    assert monitor.evaluate()["published"] is False  # unchanged and recent: quiet

    WorkerHeartbeat.objects.filter(queue="execution").update(last_seen=datetime.now(UTC) - timedelta(seconds=30))
    third = monitor.evaluate()
    assert ("service:exec-risk-service", "HEALTHY", "CRITICAL") in [c[:3] for c in third["changed"]]
    status = Event.objects.filter(type="health.status").latest("timestamp")
    assert status.payload["status"] == "CRITICAL"
    assert status.payload["services"]["exec-risk-service"]["status"] == "CRITICAL"
    alert = Event.objects.filter(type="system.alert", payload__component="health_monitor").get()
    assert alert.payload["severity"] == "critical" and "exec-risk-service" in alert.payload["message"]
    assert "no heartbeat within 15s" in alert.payload["message"]
    rows = {}
    for t in HealthTransition.objects.order_by("-at", "-pk"):
        rows.setdefault(t.component, t)  # the latest of each
    assert rows["service:exec-risk-service"].status == "CRITICAL"
    assert rows["queue:execution"].previous_status == "HEALTHY"
    # Self-healing saw it too: REDUCE_ONLY through risk; the restart is left to the container
    # runtime (PROCESS_MANAGER=none) and recorded as such.
    kinds = {a.kind: a for a in HealingAction.objects.all()}
    assert kinds["reduce_only"].outcome == "done"
    assert kinds["restart_worker"].outcome == "skipped" and "healthcheck" in kinds["restart_worker"].result
    from risk.services.modes import mode_get

    assert mode_get().value == "REDUCE_ONLY"

    WorkerHeartbeat.objects.filter(queue="execution").update(last_seen=datetime.now(UTC))
    fourth = monitor.evaluate()
    assert ("service:exec-risk-service", "CRITICAL", "HEALTHY") in [c[:3] for c in fourth["changed"]]
    back = Event.objects.filter(type="system.alert", payload__component="health_monitor").latest("timestamp")
    assert back.payload["severity"] == "info"
    # SELF_HEALING_AUTO_RESUME is off: the mode stays, and the operator is told so once.
    assert mode_get().value == "REDUCE_ONLY"
    assert HealingAction.objects.get(kind="restore_mode").outcome == "skipped"
    monitor.evaluate()
    assert HealingAction.objects.filter(kind="restore_mode").count() == 1


def test_with_auto_resume_allowed_the_mode_comes_back(monitor_world, settings):
    from analytics.models import HealingAction
    from qtweb.health.models import WorkerHeartbeat
    from risk.services.modes import mode_get

    settings.SELF_HEALING_AUTO_RESUME = True
    monitor = monitor_world
    monitor.evaluate()
    WorkerHeartbeat.objects.filter(queue="execution").update(last_seen=datetime.now(UTC) - timedelta(seconds=30))
    monitor.evaluate()
    assert mode_get().value == "REDUCE_ONLY"
    WorkerHeartbeat.objects.filter(queue="execution").update(last_seen=datetime.now(UTC))
    monitor.evaluate()
    assert mode_get().value == "NORMAL"
    assert HealingAction.objects.get(kind="restore_mode").result == "back to NORMAL"


def test_rpc_get_system_health_returns_the_whole_graph(monitor_world):
    from analytics.rpc import get_system_health

    monitor_world.evaluate()
    out = get_system_health()
    assert set(out) >= {"status", "dependencies", "queues", "workers", "services", "processes", "generated_at",
                        "age_seconds"}
    assert out["dependencies"]["database"]["latency_ms"] is not None
    assert out["dependencies"]["redis"]["latency_ms"] is not None
    assert set(out["queues"]) == set(QUEUES) and out["queues"]["ops"]["depth"] is not None


def test_execution_critical_for_less_than_the_grace_does_not_reduce_only(monitor_world, settings):
    from analytics.models import HealingAction
    from qtweb.health.models import WorkerHeartbeat
    from risk.services.modes import mode_get

    settings.SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS = 30
    monitor_world.evaluate()
    WorkerHeartbeat.objects.filter(queue="execution").update(last_seen=datetime.now(UTC) - timedelta(seconds=30))
    monitor_world.evaluate()
    monitor_world.evaluate()
    assert mode_get().value == "NORMAL"
    assert not HealingAction.objects.filter(kind="reduce_only").exists()


def test_one_health_pass_at_a_time(monitor_world):
    from django.core.cache import cache

    cache.set(monitor_world._LOCK_KEY, 1, timeout=60)  # another ops process is mid-pass
    try:
        assert monitor_world.evaluate_exclusively() is None
    finally:
        cache.delete(monitor_world._LOCK_KEY)
    assert monitor_world.evaluate_exclusively()["graph"]["status"] == "HEALTHY"
    assert cache.get(monitor_world._LOCK_KEY) is None


def test_an_execution_worker_that_never_started_is_not_an_outage(monitor_world):
    from analytics.models import HealingAction
    from qtweb.health.models import WorkerHeartbeat
    from risk.services.modes import mode_get

    WorkerHeartbeat.objects.filter(queue="execution").delete()  # a system still coming up
    out = monitor_world.evaluate()
    assert out["graph"]["services"]["exec-risk-service"]["status"] == "CRITICAL"
    monitor_world.evaluate()
    assert mode_get().value == "NORMAL"
    assert not HealingAction.objects.filter(kind="reduce_only").exists()


def test_an_outage_after_the_cached_graph_was_lost_is_still_a_transition_and_an_alert(monitor_world):
    from analytics.models import HealthTransition
    from qtweb.events.models import Event
    from qtweb.health.models import WorkerHeartbeat

    monitor_world.evaluate()
    from django.core.cache import cache

    cache.delete(g.CACHE_KEY)  # Redis restarted: the embedded one keeps nothing
    WorkerHeartbeat.objects.filter(queue="execution").update(last_seen=datetime.now(UTC) - timedelta(seconds=30))
    monitor_world.evaluate()
    row = HealthTransition.objects.filter(component="service:exec-risk-service").latest("at")
    assert (row.previous_status, row.status) == ("HEALTHY", "CRITICAL")
    assert Event.objects.filter(type="system.alert", payload__component="health_monitor",
                                payload__severity="critical").exists()
