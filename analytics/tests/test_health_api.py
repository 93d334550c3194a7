"""The health graph and self-healing over HTTP and in the admin: reads for signed-in users, the
graph as the monitor stored it, the transition and action histories with their filters, and the
operator's resume (staff only, refused by name or by state) -- on real PostgreSQL and Redis."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from analytics.health import graph as health_graph
from analytics.models import HealingAction, HealingKind, HealingOutcome, HealthTransition

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def viewer(clean_cache):
    get_user_model().objects.create_user("viewer", password="pw-123456")
    c = Client()
    c.login(username="viewer", password="pw-123456")
    return c


@pytest.fixture
def staff(clean_cache, admin_client):
    return admin_client


def _action(kind: str, target: str, *, outcome: str = HealingOutcome.DONE, minutes: float = 0, **kw) -> HealingAction:
    """A row as self-healing writes it (without the alert: these are the history the API reads)."""
    return HealingAction.objects.create(kind=kind, target=target, trigger=kw.pop("trigger", f"{target} seen dead"),
                                        outcome=outcome, result=kw.pop("result", "ok"),
                                        created_at=T0 + timedelta(minutes=minutes), **kw)


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/health/graph/", "/api/health/transitions/", "/api/health/healing/"])
def test_reads_need_a_login(url, viewer):
    assert Client().get(url).status_code in (401, 403)
    assert viewer.get(url).status_code == 200


def test_resume_is_for_staff_only(viewer):
    _action(HealingKind.GIVE_UP, "inference")
    body = {"queue": "inference", "reason": "fixed"}
    anonymous = Client().post("/api/health/healing/resume/", body, content_type="application/json")
    assert anonymous.status_code in (401, 403)
    assert viewer.post("/api/health/healing/resume/", body, content_type="application/json").status_code == 403
    assert not HealingAction.objects.filter(kind=HealingKind.RESUME).exists()


# --- the graph ------------------------------------------------------------------------------


def test_the_graph_is_the_one_the_monitor_stored_with_its_age(viewer):
    built = health_graph.build()
    built["generated_at"] = (datetime.now(UTC) - timedelta(seconds=42)).isoformat()
    built["services"]["ai-service"]["reasons"] = ["marker: stored by the monitor"]
    health_graph.store(built)

    body = viewer.get("/api/health/graph/").json()
    assert body["stored"] is True and body["source"] == "monitor"
    assert body["services"]["ai-service"]["reasons"] == ["marker: stored by the monitor"]
    assert body["generated_at"] == built["generated_at"]
    assert 42 <= body["age_seconds"] < 60
    assert set(body["queues"]) == {"inference", "execution", "learning", "ops"}


def test_without_a_stored_graph_one_is_built_now_and_says_so(viewer):
    from qtweb.health.models import WorkerHeartbeat

    now = datetime.now(UTC)
    WorkerHeartbeat.objects.create(worker="inference@api-test", service="ai-service", queue="inference", host="h",
                                   pid=77, started_at=now - timedelta(minutes=5), last_seen=now,
                                   stats={"memory_percent": 3.5, "rss_mb": 120.0})
    body = viewer.get("/api/health/graph/").json()
    assert body["stored"] is False and "built on request" in body["source"]
    assert body["age_seconds"] < 5
    assert body["dependencies"]["database"]["status"] == "HEALTHY"
    assert body["dependencies"]["redis"]["status"] == "HEALTHY"
    # Redis answered, so the backlog is known.
    assert isinstance(body["queues"]["inference"]["depth"], int)
    assert body["queues"]["inference"]["live_workers"] == ["inference@api-test"]
    assert body["workers"]["inference@api-test"]["pid"] == 77
    assert body["workers"]["inference@api-test"]["memory_percent"] == 3.5
    # No worker ever reported on execution: its service is down.
    assert body["services"]["exec-risk-service"]["status"] == "CRITICAL"
    assert "process_manager" in body and "processes" in body


# --- transitions ----------------------------------------------------------------------------


def _transitions():
    rows = [("queue:inference", "HEALTHY", "CRITICAL", 0), ("service:ai-service", "HEALTHY", "CRITICAL", 0),
            ("queue:inference", "CRITICAL", "HEALTHY", 10), ("dependency:redis", "HEALTHY", "CRITICAL", 20)]
    return [HealthTransition.objects.create(component=c, previous_status=old, status=new, reasons=[f"{c} {new}"],
                                            at=T0 + timedelta(minutes=m)) for c, old, new, m in rows]


def test_transitions_newest_first_paginated_and_filtered(viewer):
    inf_down, svc_down, inf_up, redis_down = _transitions()
    page = viewer.get("/api/health/transitions/", {"limit": 2}).json()
    assert page["count"] == 4
    assert [r["id"] for r in page["results"]] == [redis_down.pk, inf_up.pk]
    assert page["results"][0] == {"id": redis_down.pk, "component": "dependency:redis", "previous_status": "HEALTHY",
                                  "status": "CRITICAL", "reasons": ["dependency:redis CRITICAL"],
                                  "at": "2026-03-01T12:20:00Z", "trace_id": ""}
    assert page["next"]

    def ids(**params):
        r = viewer.get("/api/health/transitions/", params)
        assert r.status_code == 200, r.content
        return [row["id"] for row in r.json()["results"]]

    assert ids(component="queue:inference") == [inf_up.pk, inf_down.pk]
    assert ids(status="CRITICAL") == [redis_down.pk, svc_down.pk, inf_down.pk]
    assert ids(since="2026-03-01T12:10:00Z") == [redis_down.pk, inf_up.pk]
    assert ids(component="queue:inference", status="CRITICAL") == [inf_down.pk]


def test_a_bad_transition_filter_is_a_400_naming_it(viewer):
    r = viewer.get("/api/health/transitions/", {"status": "ON_FIRE"})
    assert r.status_code == 400 and "ON_FIRE" in str(r.json()["status"])
    r = viewer.get("/api/health/transitions/", {"since": "last tuesday"})
    assert r.status_code == 400 and "since" in r.json()


# --- healing actions ------------------------------------------------------------------------


def test_healing_actions_newest_first_and_filtered(viewer):
    restart = _action(HealingKind.RESTART_WORKER, "inference", minutes=1, details={"program": "worker-inference"})
    failed = _action(HealingKind.RESTART_WORKER, "execution", outcome=HealingOutcome.FAILED, minutes=2,
                     result="supervisord unreachable")
    give_up = _action(HealingKind.GIVE_UP, "inference", minutes=3)
    quarantine = _action(HealingKind.QUARANTINE_MODEL, "xgboost", outcome=HealingOutcome.SKIPPED, minutes=4,
                         shadow=True)

    r = viewer.get("/api/health/healing/")
    listed = r.json()["results"]
    assert [a["id"] for a in listed] == [quarantine.pk, give_up.pk, failed.pk, restart.pk]
    assert listed[-1] == {"id": restart.pk, "kind": "restart_worker", "target": "inference",
                          "trigger": "inference seen dead", "details": {"program": "worker-inference"},
                          "outcome": "done", "result": "ok", "rule": None, "rule_name": None, "shadow": False,
                          "created_at": "2026-03-01T12:01:00Z", "trace_id": ""}
    assert listed[0]["shadow"] is True

    def ids(**params):
        r = viewer.get("/api/health/healing/", params)
        assert r.status_code == 200, r.content
        return [a["id"] for a in r.json()["results"]]

    assert ids(kind="restart_worker") == [failed.pk, restart.pk]
    assert ids(target="inference") == [give_up.pk, restart.pk]
    assert ids(outcome="failed") == [failed.pk]
    assert ids(kind="restart_worker", target="inference") == [restart.pk]
    assert ids(limit=1) == [quarantine.pk]
    bad = viewer.get("/api/health/healing/", {"kind": "reboot_universe"})
    assert bad.status_code == 400 and "reboot_universe" in str(bad.json()["kind"])
    bad = viewer.get("/api/health/healing/", {"outcome": "maybe"})
    assert bad.status_code == 400 and "outcome" in bad.json()


# --- resume ---------------------------------------------------------------------------------


@override_settings(PROCESS_MANAGER="none")
def test_resume_after_a_give_up_records_it_and_alerts(staff):
    from analytics.healing import service
    from qtweb.events.models import Event

    _action(HealingKind.GIVE_UP, "inference", result="3 restarts within 600s")
    assert service.given_up("inference") is not None

    r = staff.post("/api/health/healing/resume/", {"queue": "inference", "reason": "fixed the model file"},
                   content_type="application/json")
    assert r.status_code == 201, r.content
    action = r.json()
    assert action["kind"] == "resume" and action["target"] == "inference" and action["outcome"] == "done"
    assert action["trigger"] == "operator admin: fixed the model file"
    assert action["details"] == {"queue": "inference", "program": "worker-inference", "by": "admin"}
    assert action["result"] == "left to the container runtime"
    row = HealingAction.objects.get(pk=action["id"])
    assert row.kind == HealingKind.RESUME
    # Self-healing looks after the worker again, and the alert the dashboard shows was published.
    assert service.given_up("inference") is None
    alert = Event.objects.filter(type="system.alert").latest("timestamp")
    assert alert.payload["component"] == "self_healing" and "resume inference" in alert.payload["message"]
    # Once resumed there is nothing more to resume.
    again = staff.post("/api/health/healing/resume/", {"queue": "inference"}, content_type="application/json")
    assert again.status_code == 409 and "has not given up on the inference worker" in again.json()["detail"]
    assert HealingAction.objects.filter(kind=HealingKind.RESUME).count() == 1


@override_settings(PROCESS_MANAGER="none")
def test_resume_refuses_an_unknown_queue_by_name_and_a_queue_not_given_up(staff):
    for body, text in (({"queue": "warp-drive"}, "one of inference, execution, learning, ops, got 'warp-drive'"),
                       ({"reason": "no queue"}, "This field is required")):
        r = staff.post("/api/health/healing/resume/", body, content_type="application/json")
        assert r.status_code == 400 and text in str(r.json()["queue"]), r.content
    # A give-up on another queue does not count for this one.
    _action(HealingKind.GIVE_UP, "execution")
    r = staff.post("/api/health/healing/resume/", {"queue": "inference"}, content_type="application/json")
    assert r.status_code == 409, r.content
    # A give-up already resumed does not count either.
    _action(HealingKind.GIVE_UP, "learning", minutes=1)
    _action(HealingKind.RESUME, "learning", minutes=2)
    r = staff.post("/api/health/healing/resume/", {"queue": "learning"}, content_type="application/json")
    assert r.status_code == 409, r.content
    assert HealingAction.objects.filter(kind=HealingKind.RESUME).count() == 1


def test_every_health_view_is_in_the_api_schema():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert set(paths["/api/health/graph/"]) == {"get"}
    assert "limit" in {p["name"] for p in paths["/api/health/transitions/"]["get"]["parameters"]}
    assert {"kind", "target", "outcome"} <= {p["name"] for p in paths["/api/health/healing/"]["get"]["parameters"]}
    resume = paths["/api/health/healing/resume/"]["post"]
    assert {"201", "400", "409"} <= set(resume["responses"])
    assert "ResumeRequest" in str(resume["requestBody"])


# --- admin ----------------------------------------------------------------------------------


def test_admin_pages_render_read_only(staff):
    _transitions()
    give_up = _action(HealingKind.GIVE_UP, "inference", result="stopped restarting worker-inference")
    for url in ("/admin/analytics/healthtransition/", "/admin/analytics/healingaction/",
                f"/admin/analytics/healingaction/{give_up.pk}/change/",
                "/admin/analytics/healthtransition/?status__exact=CRITICAL",
                "/admin/analytics/healingaction/?kind__exact=give_up&q=inference"):
        r = staff.get(url)
        assert r.status_code == 200, (url, r.content[:500])
    changelist = staff.get("/admin/analytics/healingaction/").content.decode()
    assert "stopped restarting worker-inference" in changelist
    assert "Resume self-healing of this worker" in changelist
    assert 'href="/admin/analytics/healthtransition/graph/"' in changelist
    assert staff.get("/admin/analytics/healingaction/add/").status_code == 403
    graph = staff.get("/admin/analytics/healthtransition/graph/")
    assert graph.status_code == 200 and b'id="graph-queues"' in graph.content
    assert b"built on request" in graph.content


@override_settings(PROCESS_MANAGER="none")
def test_the_admin_action_asks_a_reason_then_resumes_the_worker(staff):
    from analytics.healing import service

    give_up = _action(HealingKind.GIVE_UP, "execution")
    restart = _action(HealingKind.RESTART_WORKER, "inference", minutes=1)
    url = "/admin/analytics/healingaction/"
    ask = staff.post(url, {"action": "resume_self_healing", "_selected_action": [give_up.pk]})
    assert ask.status_code == 200 and b'id="resume-form"' in ask.content
    assert not HealingAction.objects.filter(kind=HealingKind.RESUME).exists()
    # A reason is required.
    blank = staff.post(url, {"action": "resume_self_healing", "_selected_action": [give_up.pk], "apply": "1",
                             "reason": ""})
    assert blank.status_code == 200 and b"This field is required" in blank.content
    assert not HealingAction.objects.filter(kind=HealingKind.RESUME).exists()

    done = staff.post(url, {"action": "resume_self_healing", "_selected_action": [give_up.pk], "apply": "1",
                            "reason": "disk cleaned"}, follow=True)
    assert done.status_code == 200
    assert "execution: self-healing resumed; left to the container runtime" in _messages(done)
    resume = HealingAction.objects.get(kind=HealingKind.RESUME)
    assert resume.target == "execution" and resume.trigger == "operator admin: disk cleaned"
    assert service.given_up("execution") is None

    # A row that is not a give-up resumes nothing.
    other = staff.post(url, {"action": "resume_self_healing", "_selected_action": [restart.pk]}, follow=True)
    assert "select a give_up row" in _messages(other)
    assert HealingAction.objects.filter(kind=HealingKind.RESUME).count() == 1


def _messages(response) -> str:
    """The admin's messages as shown (it capitalizes their first letter), lower-cased."""
    return " | ".join(str(m) for m in response.context["messages"]).lower()


def test_the_admin_action_is_not_offered_to_a_viewer_without_staff(viewer):
    # Not staff: no admin at all (the admin's login page instead).
    r = viewer.get("/admin/analytics/healingaction/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]
