"""Alert rules as data: the catalogue refuses malformed rules naming the field (the catalogue
itself, the admin and the API say the same), and evaluation against hand-built health graphs
fires once per cooldown, resolves, and routes each action through the service that owns it."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from analytics.alerting import catalog, evaluate, metrics
from analytics.alerting.catalog import RuleError, validate_rule
from analytics.alerting.evaluate import evaluate_rules
from analytics.models import AlertFiring, AlertRule, HealingAction, RetrainingJob
from qtweb.events.models import Event

D = Decimal
pytestmark = pytest.mark.django_db

SERVICES = {"ai-service": ("inference",), "exec-risk-service": ("execution",),
            "analytics-os-service": ("learning", "ops")}


def graph(*, heartbeat: dict | None = None, memory: dict | None = None, stopped=(), disabled=(),
          db_latency_ms: float | None = 1.5) -> dict:
    """A health graph in the monitor's shape: one worker per queue (`<queue>@host1`), beating 2 s
    ago with 20 % memory unless told otherwise. heartbeat {queue: age or None (never reported)}."""
    heartbeat, memory = heartbeat or {}, memory or {}
    g = {"generated_at": datetime.now(UTC).isoformat(), "status": "HEALTHY", "reasons": [],
         "dependencies": {"database": {"status": "HEALTHY", "latency_ms": db_latency_ms},
                          "redis": {"status": "HEALTHY", "latency_ms": 0.4}},
         "queues": {}, "workers": {}, "services": {}}
    for service, queues in SERVICES.items():
        on = service not in disabled
        g["services"][service] = {"status": "HEALTHY" if on else "DISABLED", "reasons": [], "enabled": on,
                                  "shadow": False, "queues": list(queues), "modules": {}}
        for q in queues:
            age = heartbeat.get(q, 2.0)
            worker = f"{q}@host1"
            if age is not None:
                g["workers"][worker] = {
                    "service": service, "queue": q, "host": "host1", "pid": 4242, "heartbeat_age_seconds": age,
                    "shut_down": q in stopped, "memory_percent": memory.get(q, 20.0), "rss_mb": 300.0,
                    "cpu_percent": 3.0, "active_tasks": 0, "uptime_seconds": 600.0, "status": "HEALTHY",
                    "reasons": []}
            g["queues"][q] = {"service": service, "status": "HEALTHY", "reasons": [], "depth": 0,
                              "oldest_age_seconds": None,
                              "heartbeat_age_seconds": None if age is None or q in stopped else age,
                              "workers": [worker] if age is not None and q not in stopped else [], "enabled": on}
    return g


@pytest.fixture
def only():
    """Enable just the named rules (the migration installs all four)."""

    def enable(*names: str) -> dict[str, AlertRule]:
        AlertRule.objects.exclude(name__in=names).update(enabled=False)
        AlertRule.objects.filter(name__in=names).update(enabled=True)
        return {r.name: r for r in AlertRule.objects.filter(name__in=names)}

    return enable


def alerts(**payload) -> list[Event]:
    qs = Event.objects.filter(type="system.alert", payload__component="alert_rules")
    for k, v in payload.items():
        qs = qs.filter(**{f"payload__{k}": v})
    return list(qs.order_by("timestamp"))


def account(*, equity: str, day_start: str, age_seconds: float = 3.0, taken_at: datetime | None = None) -> None:
    """The account snapshot the execution side keeps (trading/snapshots.py)."""
    from trading import selectors as trading_sel
    from trading.snapshots import AccountSnapshot, snapshot_store

    taken = taken_at or datetime.now(UTC) - timedelta(seconds=age_seconds)
    snapshot_store(AccountSnapshot(exchange=trading_sel.execution_exchange(), taken_at=taken,
                                   balance_usd=D(equity), equity_usd=D(equity), day_start_equity_usd=D(day_start)))


# --- the catalogue -------------------------------------------------------------------------------

GOOD = {"metric": "drawdown_pct", "comparison": "gt", "threshold": 10.0, "action": "emergency_stop",
        "severity": "critical"}

BAD_RULES = {
    "unknown metric": ({"metric": "cpu_temperature"}, "metric", "unknown metric 'cpu_temperature'"),
    "empty metric": ({"metric": ""}, "metric", "unknown metric ''"),
    "unknown comparison": ({"comparison": "=="}, "comparison", "unknown comparison '=='"),
    "NaN threshold": ({"threshold": math.nan}, "threshold", "must be finite"),
    "infinite threshold": ({"threshold": math.inf}, "threshold", "must be finite"),
    "minus infinity": ({"threshold": -math.inf}, "threshold", "must be finite"),
    "bool threshold": ({"threshold": True}, "threshold", "must be a number, got True"),
    "str threshold": ({"threshold": "10"}, "threshold", "must be a number, got '10'"),
    "None threshold": ({"threshold": None}, "threshold", "must be a number, got None"),
    "threshold above the range": ({"threshold": 150.0}, "threshold", "between 0.1 and 100, got 150"),
    "threshold below the range": ({"threshold": -1}, "threshold", "between 0.1 and 100, got -1"),
    "unknown action": ({"action": "reboot_universe"}, "action", "unknown action 'reboot_universe'"),
    "restart the account": ({"action": "auto_restart"}, "action", "auto_restart cannot act on drawdown_pct"),
    "retrain a queue": ({"metric": "heartbeat_missing_seconds", "action": "trigger_retraining"}, "action",
                        "trigger_retraining cannot act on heartbeat_missing_seconds, which is measured per queue"),
    "pool of a model": ({"metric": "drift_score", "threshold": 0.2, "action": "restart_pool"}, "action",
                        "restart_pool cannot act on drift_score"),
    "unknown severity": ({"severity": "panic"}, "severity", "unknown severity 'panic'"),
}


@pytest.mark.parametrize("change,field,message", BAD_RULES.values(), ids=BAD_RULES.keys())
def test_a_malformed_rule_is_refused_naming_the_field(change, field, message):
    with pytest.raises(RuleError) as caught:
        validate_rule(**{**GOOD, **change})
    assert caught.value.field == field and message in caught.value.message


@pytest.mark.parametrize("rule", catalog.DEFAULT_RULES, ids=[r["name"] for r in catalog.DEFAULT_RULES])
def test_the_design_rules_are_valid(rule):
    validate_rule(metric=rule["metric"], comparison=rule["comparison"], threshold=rule["threshold"],
                  action=rule["action"], severity=rule["severity"])


@pytest.mark.parametrize("comparison,value,holds", [("gt", 10.0, False), ("gt", 10.01, True), ("ge", 10.0, True),
                                                    ("lt", 9.9, True), ("lt", 10.0, False), ("le", 10.0, True)])
def test_comparisons(comparison, value, holds):
    assert catalog.holds(comparison, value, 10.0) is holds


def test_every_catalogued_metric_can_be_measured():
    assert set(metrics._MEASURES) == set(catalog.METRICS)
    assert set(evaluate._ACTIONS) == set(catalog.ACTIONS) == set(evaluate._VERBS)


def test_the_migration_installed_the_four_rules_of_the_design():
    rows = {r.name: (r.metric, r.comparison, r.threshold, r.action, r.enabled) for r in AlertRule.objects.all()}
    assert rows == {
        "ServiceDown": ("heartbeat_missing_seconds", "gt", 15.0, "auto_restart", True),
        "HighMemory": ("memory_percent", "gt", 85.0, "notify", True),
        "DrawdownLimit": ("drawdown_pct", "gt", 10.0, "emergency_stop", True),
        "ModelDrift": ("drift_score", "gt", 0.15, "trigger_retraining", True),
    }


# --- measuring -------------------------------------------------------------------------------------


def test_graph_metrics_skip_what_is_switched_off_stopped_stale_or_never_reported(settings):
    settings.HEARTBEAT_STALE_SECONDS = 15
    g = graph(heartbeat={"inference": 40.0, "learning": None, "ops": 3.0}, memory={"ops": 91.0, "inference": 95.0},
              stopped=("ops",), disabled=("exec-risk-service",))
    # execution: its service is off; learning: never reported; ops: stopped cleanly.
    assert metrics.measure("heartbeat_missing_seconds", g) == {"inference": 40.0}
    # inference's last memory figure is 40 s old (stale): unknown, not 95 %.
    assert metrics.measure("memory_percent", g) == {}
    assert metrics.measure("memory_percent", graph(memory={"ops": 91.0}))["ops@host1"] == 91.0
    assert metrics.present_subjects("memory_percent", g) == {"inference@host1"}
    assert metrics.present_subjects("heartbeat_missing_seconds", g) == {"inference", "learning", "ops"}
    assert metrics.measure("database_latency_ms", graph(db_latency_ms=None)) == {}
    assert metrics.measure("database_latency_ms", g) == {"database": 1.5}


def test_drawdown_is_the_governors_from_a_fresh_snapshot_and_unknown_otherwise(clean_cache):
    from trading import selectors as trading_sel

    exchange = trading_sel.execution_exchange()
    assert metrics.measure("drawdown_pct", graph()) == {}  # no snapshot: unknown
    account(equity="100000", day_start="112000")
    found = metrics.account_drawdown_pct()
    assert found is not None and found[0] == exchange
    assert found[1].quantize(D("0.0001")) == D("10.7143")  # (112000 - 100000) / 112000 * 100
    account(equity="120000", day_start="112000")
    assert metrics.measure("drawdown_pct", graph()) == {exchange: 0.0}  # a winning day
    account(equity="50000", day_start="112000", age_seconds=600)  # older than the 180 s bound
    assert metrics.measure("drawdown_pct", graph()) == {}
    late = datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC)
    account(equity="50000", day_start="112000", taken_at=late)
    assert metrics.measure("drawdown_pct", graph(), now=late + timedelta(seconds=30))[exchange] == \
        pytest.approx(55.357, abs=1e-3)
    # 90 s old is fresh enough, but its day start is yesterday's: the drawdown is unknown.
    assert metrics.measure("drawdown_pct", graph(), now=late + timedelta(seconds=90)) == {}


# --- evaluation ------------------------------------------------------------------------------------


def test_a_rule_fires_once_per_cooldown_and_resolves_when_the_condition_clears(only, clean_cache):
    only("HighMemory")  # memory_percent > 85 -> notify, cooldown 600 s
    t0 = datetime.now(UTC)
    hot, cool = graph(memory={"inference": 91.5}), graph(memory={"inference": 40.0})

    [firing] = evaluate_rules(hot, now=t0)
    assert (firing.rule.name, firing.subject, firing.value, firing.threshold) == ("HighMemory", "inference@host1",
                                                                                  91.5, 85.0)
    assert firing.action_outcome == "done" and firing.resolved_at is None
    [alert] = alerts(service="ai-service")
    assert alert.payload["severity"] == "warning" and alert.trace_id == firing.trace_id
    for part in ("HighMemory", "inference@host1", "91.5", "85", "notify"):
        assert part in alert.payload["message"]

    assert evaluate_rules(hot, now=t0 + timedelta(seconds=5)) == []  # still open, within the cooldown
    assert evaluate_rules(cool, now=t0 + timedelta(seconds=10)) == []
    firing.refresh_from_db()
    assert firing.resolved_at == t0 + timedelta(seconds=10)
    assert "resolved" in alerts()[-1].payload["message"] and alerts()[-1].payload["severity"] == "info"
    assert evaluate_rules(hot, now=t0 + timedelta(seconds=60)) == []  # back, but within the cooldown
    [again] = evaluate_rules(hot, now=t0 + timedelta(seconds=601))
    # Held past the cooldown: acts again, a new firing; both stay open until it clears.
    [third] = evaluate_rules(hot, now=t0 + timedelta(seconds=1202))
    assert again.pk != third.pk and AlertFiring.objects.filter(resolved_at__isnull=True).count() == 2
    evaluate_rules(cool, now=t0 + timedelta(seconds=1210))
    assert not AlertFiring.objects.filter(resolved_at__isnull=True).exists()


def test_a_stopped_worker_resolves_its_firing_but_unknown_data_does_not(only, clean_cache):
    only("HighMemory")
    t0 = datetime.now(UTC)
    [firing] = evaluate_rules(graph(memory={"ops": 95.0}), now=t0)
    # Its heartbeat went stale: the memory is unknown, the firing stays open.
    evaluate_rules(graph(heartbeat={"ops": 60.0}, memory={"ops": 10.0}), now=t0 + timedelta(seconds=5))
    firing.refresh_from_db()
    assert firing.resolved_at is None
    evaluate_rules(graph(stopped=("ops",)), now=t0 + timedelta(seconds=10))
    firing.refresh_from_db()
    assert firing.resolved_at is not None


def test_disabled_rules_and_disabled_services_do_nothing(only, clean_cache):
    rules = only("HighMemory")
    AlertRule.objects.filter(pk=rules["HighMemory"].pk).update(enabled=False)
    assert evaluate_rules(graph(memory={"inference": 99.0})) == []
    AlertRule.objects.filter(pk=rules["HighMemory"].pk).update(enabled=True)
    assert evaluate_rules(graph(memory={"inference": 99.0})) != []
    assert evaluate_rules(graph(memory={"execution": 99.0}, disabled=("exec-risk-service",))) == []


def test_drawdown_limit_halts_through_risk_with_the_reason_on_record(only, clean_cache):
    from risk.models import ModeChange
    from risk.services.modes import mode_get

    only("DrawdownLimit")
    account(equity="100000", day_start="112000")
    [firing] = evaluate_rules(graph())
    assert firing.action_outcome == "done" and "HALTED" in firing.action_result
    assert mode_get() == "HALTED"
    change = ModeChange.objects.latest("created_at")
    assert change.changed_by == "alert rule DrawdownLimit" and not change.by_operator
    assert "drawdown_pct 10.7143 % > 10" in change.reason
    stop = Event.objects.get(type="emergency.stop")
    assert stop.payload["triggered_by"] == "alert rule DrawdownLimit"
    assert stop.payload["drawdown_pct"] == pytest.approx(10.714, abs=1e-3)
    assert stop.trace_id == firing.trace_id  # one trace: the firing, the stop, the alert
    [alert] = alerts()
    assert alert.payload["severity"] == "critical" and alert.payload["service"] == "exec-risk-service"
    action = HealingAction.objects.get(rule=firing.rule)
    assert action.kind == "rule" and action.outcome == "done" and action.details["action"] == "emergency_stop"


def test_drawdown_on_unknown_account_state_does_not_stop_and_records_nothing(only, clean_cache):
    from risk.services.modes import mode_get

    only("DrawdownLimit")
    assert evaluate_rules(graph()) == []  # no snapshot
    account(equity="1000", day_start="112000", age_seconds=900)  # a stale one showing a crash
    assert evaluate_rules(graph()) == []
    assert mode_get() == "NORMAL" and not Event.objects.filter(type="emergency.stop").exists()
    assert not AlertFiring.objects.exists()


def test_an_operator_resume_today_is_not_overruled_by_the_rule(only, clean_cache):
    from risk.services.modes import mode_get, mode_set

    rules = only("DrawdownLimit")
    account(equity="100000", day_start="112000")
    t0 = datetime.now(UTC)
    evaluate_rules(graph(), now=t0)
    mode_set(target="REDUCE_ONLY", reason="flat now, watching it", changed_by="alice", by_operator=True)
    AlertRule.objects.filter(pk=rules["DrawdownLimit"].pk).update(cooldown_seconds=1)
    [again] = evaluate_rules(graph(), now=t0 + timedelta(seconds=2))
    assert again.action_outcome == "skipped" and "an operator resumed" in again.action_result
    assert mode_get() == "REDUCE_ONLY"


def test_shadow_decides_and_records_but_does_not_act(only, clean_cache, settings):
    from risk.services.modes import mode_get

    settings.ANALYTICS_OS_SERVICE_SHADOW = True
    only("DrawdownLimit")
    account(equity="100000", day_start="112000")
    [firing] = evaluate_rules(graph())
    assert firing.action_outcome == "skipped" and firing.action_result.startswith("shadow: would have stopped")
    assert mode_get() == "NORMAL" and not Event.objects.filter(type="emergency.stop").exists()
    assert HealingAction.objects.get(rule=firing.rule).shadow


def test_reduce_only_goes_through_risk_and_an_impossible_change_is_recorded(only, clean_cache):
    from risk.services.modes import mode_get

    only()
    rule = AlertRule.objects.create(name="SoftDrawdown", metric="drawdown_pct", comparison="ge", threshold=5.0,
                                    action="reduce_only", severity="warning", cooldown_seconds=1)
    account(equity="100000", day_start="107000")
    t0 = datetime.now(UTC)
    [first] = evaluate_rules(graph(), now=t0)
    assert first.action_outcome == "done" and mode_get() == "REDUCE_ONLY"
    [second] = evaluate_rules(graph(), now=t0 + timedelta(seconds=2))
    assert second.rule == rule and second.action_outcome == "skipped" and "already in REDUCE_ONLY" in \
        second.action_result


def test_model_drift_queues_a_retraining_through_the_learning_manager(only, clean_cache):
    from analytics.models import DriftCheck
    from tests.support.learning import model_version

    only("ModelDrift")
    champion = model_version("xgboost", 3, "champion")
    DriftCheck.objects.create(model_version=champion, model_type="xgboost", checked_at=datetime.now(UTC),
                              drift_score=0.31, threshold=0.15, detected=True)
    model_version("lightgbm", 2, "champion")  # no drift check: unknown, nothing to do
    t0 = datetime.now(UTC)
    [firing] = evaluate_rules(graph(), now=t0)
    job = RetrainingJob.objects.get()
    assert (firing.subject, firing.action_outcome) == ("xgboost", "done") and f"job {job.pk}" in firing.action_result
    assert (job.model_type, job.trigger, job.requested_by) == ("xgboost", "drift", "alert rule ModelDrift")
    assert "drift_score 0.31 PSI > 0.15" in job.reason
    # After the cooldown, still drifting, the job still queued: refused by name, recorded.
    [again] = evaluate_rules(graph(), now=t0 + timedelta(seconds=3601))
    assert again.action_outcome == "skipped" and f"job {job.pk}" in again.action_result
    assert RetrainingJob.objects.count() == 1


class FakeProcessManager:
    name = "fake"

    def __init__(self):
        self.restarted: list[str] = []

    def restart(self, program: str) -> str:
        self.restarted.append(program)
        return f"{program} restarted"

    def processes(self):
        return {}


def test_service_down_restarts_the_queue_worker_through_self_healing(only, clean_cache, monkeypatch):
    from analytics.healing import service as healing

    pm = FakeProcessManager()
    monkeypatch.setattr(healing, "manager", lambda: pm)
    only("ServiceDown")
    [firing] = evaluate_rules(graph(heartbeat={"execution": 42.0, "learning": None}))
    # execution stopped beating 42 s ago; learning never reported (nothing to restart).
    assert firing.subject == "execution" and firing.action_outcome == "done" and pm.restarted == ["worker-execution"]
    action = HealingAction.objects.get(rule=firing.rule)
    assert (action.kind, action.target, action.outcome) == ("restart_worker", "execution", "done")
    assert "alert rule ServiceDown" in action.trigger and "heartbeat_missing_seconds 42 s > 15" in action.trigger
    assert alerts()[0].payload["service"] == "exec-risk-service"


def test_restart_pool_is_routed_to_self_healing(only, clean_cache, monkeypatch):
    from analytics.healing import service as healing

    calls = []

    def restart_pool(worker, *, trigger, details, rule=None):  # a stand-in: the real one asks the broker
        calls.append((worker, rule.name, details["value"]))
        return HealingAction.objects.create(kind="restart_pool", target=worker, trigger=trigger, outcome="done",
                                            result="pool restarted", rule=rule, created_at=datetime.now(UTC))

    monkeypatch.setattr(healing, "restart_pool", restart_pool)
    only()
    AlertRule.objects.create(name="Leak", metric="memory_percent", threshold=90.0, action="restart_pool")
    [firing] = evaluate_rules(graph(memory={"learning": 93.0}))
    assert calls == [("learning@host1", "Leak", 93.0)]
    assert firing.action_outcome == "done" and "pool restarted" in firing.action_result


def test_a_failing_action_is_recorded_with_its_reason_retried_sooner_and_does_not_stop_the_others(
        only, clean_cache, monkeypatch):
    import risk.services.governor

    def broken(**kwargs):
        raise RuntimeError("risk database unreachable")

    monkeypatch.setattr(risk.services.governor, "emergency_stop", broken)
    only("DrawdownLimit", "HighMemory")
    account(equity="100000", day_start="112000")
    t0 = datetime.now(UTC)
    fired = evaluate_rules(graph(memory={"ops": 97.0}), now=t0)
    by_rule = {f.rule.name: f for f in fired}
    assert set(by_rule) == {"DrawdownLimit", "HighMemory"}
    failed = by_rule["DrawdownLimit"]
    assert failed.action_outcome == "failed" and "RuntimeError: risk database unreachable" in failed.action_result
    assert alerts(severity="critical")[0].trace_id == failed.trace_id
    assert by_rule["HighMemory"].action_outcome == "done"
    # A failed safety action is tried again after a minute, not after the rule's hour of cooldown.
    account(equity="100000", day_start="112000")
    assert evaluate_rules(graph(), now=t0 + timedelta(seconds=30)) == []
    later = t0 + timedelta(seconds=evaluate.FAILED_ACTION_RETRY_SECONDS + 1)
    assert [f.rule.name for f in evaluate_rules(graph(), now=later)] == ["DrawdownLimit"]


def test_a_stored_rule_the_catalogue_refuses_is_reported_once_until_fixed(only, clean_cache):
    rules = only("HighMemory")
    AlertRule.objects.filter(pk=rules["HighMemory"].pk).update(metric="cpu_temperature")  # bypasses clean()
    [firing] = evaluate_rules(graph(memory={"inference": 99.0}))
    assert firing.subject == "(rule)" and firing.action_outcome == "failed"
    assert "metric: unknown metric 'cpu_temperature'" in firing.action_result
    assert evaluate_rules(graph()) == []  # reported once, not every 5 s
    AlertRule.objects.filter(pk=rules["HighMemory"].pk).update(metric="memory_percent")
    evaluate_rules(graph())
    firing.refresh_from_db()
    assert firing.resolved_at is not None


def test_evaluation_never_raises(only, clean_cache, monkeypatch):
    only("HighMemory")

    def explode(*a, **k):
        raise ValueError("graph from the future")

    monkeypatch.setattr(metrics, "measure", explode)
    assert evaluate_rules(graph(memory={"inference": 99.0})) == []
    assert evaluate_rules({}) == []


# --- the admin -------------------------------------------------------------------------------------

ADMIN_GOOD = {"name": "QueueBacklog", "description": "", "metric": "queue_depth", "comparison": "gt",
              "threshold": "5000", "action": "notify", "severity": "warning", "enabled": "on",
              "cooldown_seconds": "300"}

ADMIN_BAD = {
    "unknown metric": ({"metric": "cpu_temperature"}, "metric", "unknown metric"),
    "NaN threshold": ({"threshold": "nan"}, "threshold", "finite number"),
    "infinite threshold": ({"threshold": "inf"}, "threshold", "finite number"),
    "word threshold": ({"threshold": "lots"}, "threshold", "finite number"),
    "out of range": ({"threshold": "-5"}, "threshold", "between 0 and 1e+07, got -5"),
    "unknown action": ({"action": "reboot_universe"}, "action", "unknown action 'reboot_universe'"),
    "action that does not fit": ({"action": "trigger_retraining"}, "action", "cannot act on queue_depth"),
    "unknown comparison": ({"comparison": "eq"}, "comparison", "unknown comparison 'eq'"),
}


@pytest.mark.parametrize("change,field,message", ADMIN_BAD.values(), ids=ADMIN_BAD.keys())
def test_the_admin_refuses_a_malformed_rule_on_its_field(admin_client, change, field, message):
    r = admin_client.post("/admin/analytics/alertrule/add/", {**ADMIN_GOOD, **change})
    assert r.status_code == 200
    errors = r.context["adminform"].form.errors
    assert list(errors) == [field] and message in errors[field][0], errors
    assert not AlertRule.objects.filter(name="QueueBacklog").exists()


def test_the_admin_offers_the_catalogue_adds_and_changes_rules(admin_client):
    page = admin_client.get("/admin/analytics/alertrule/add/").content.decode()
    for option in ('value="heartbeat_missing_seconds"', 'value="drift_score"', 'value="trigger_retraining"',
                   'value="ge"', 'value="critical"'):
        assert option in page
    r = admin_client.post("/admin/analytics/alertrule/add/", ADMIN_GOOD)
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    rule = AlertRule.objects.get(name="QueueBacklog")
    assert (rule.threshold, rule.updated_by) == (5000.0, "admin")
    drawdown = AlertRule.objects.get(name="DrawdownLimit")
    url = f"/admin/analytics/alertrule/{drawdown.pk}/change/"
    form = {"name": "DrawdownLimit", "metric": "drawdown_pct", "comparison": "gt", "threshold": "250",
            "action": "emergency_stop", "severity": "critical", "enabled": "on", "cooldown_seconds": "3600"}
    refused = admin_client.post(url, form)
    assert refused.status_code == 200 and "between 0.1 and 100" in refused.context["adminform"].form.errors[
        "threshold"][0]
    drawdown.refresh_from_db()
    assert drawdown.threshold == 10.0
    assert admin_client.post(url, {**form, "threshold": "8"}).status_code == 302
    drawdown.refresh_from_db()
    assert drawdown.threshold == 8.0 and drawdown.updated_by == "admin"


def test_a_stored_unknown_value_is_shown_not_silently_replaced(admin_client):
    rule = AlertRule.objects.get(name="HighMemory")
    AlertRule.objects.filter(pk=rule.pk).update(metric="cpu_temperature")
    page = admin_client.get(f"/admin/analytics/alertrule/{rule.pk}/change/").content.decode()
    assert 'value="cpu_temperature" selected' in page and "cpu_temperature (unknown)" in page


def test_firings_are_read_only_in_the_admin(admin_client, only, clean_cache):
    only("HighMemory")
    [firing] = evaluate_rules(graph(memory={"inference": 99.0}))
    assert admin_client.get("/admin/analytics/alertfiring/").status_code == 200
    assert admin_client.get("/admin/analytics/alertfiring/?resolved_at__isempty=1").status_code == 200
    assert admin_client.get("/admin/analytics/alertfiring/add/").status_code == 403
    page = admin_client.get(f"/admin/analytics/alertfiring/{firing.pk}/change/")
    assert page.status_code == 200 and b"inference@host1" in page.content
    assert admin_client.post(f"/admin/analytics/alertfiring/{firing.pk}/delete/", {"post": "yes"}).status_code == 403


# --- the API ---------------------------------------------------------------------------------------

API_GOOD = {"name": "SlowDatabase", "metric": "database_latency_ms", "comparison": "gt", "threshold": 500,
            "action": "notify", "severity": "warning", "cooldown_seconds": 120}

API_BAD = {
    "unknown metric": ({"metric": "cpu_temperature"}, "metric", "unknown metric 'cpu_temperature'"),
    "unknown comparison": ({"comparison": "=="}, "comparison", "unknown comparison '=='"),
    "bool threshold": ({"threshold": True}, "threshold", "must be a number, got True"),
    "word threshold": ({"threshold": "slow"}, "threshold", "must be a number, got 'slow'"),
    "NaN as a string": ({"threshold": "NaN"}, "threshold", "must be finite, got nan"),
    "infinite": ({"threshold": "1e999"}, "threshold", "must be finite, got inf"),
    "out of range": ({"threshold": 0}, "threshold", "between 0.1 and 600000"),
    "null threshold": ({"threshold": None}, "threshold", "may not be null"),
    "unknown action": ({"action": "reboot_universe"}, "action", "unknown action 'reboot_universe'"),
    "action that does not fit": ({"action": "restart_pool"}, "action", "restart_pool cannot act on database_lat"),
    "unknown severity": ({"severity": "panic"}, "severity", "unknown severity 'panic'"),
    "a cooldown that acts every pass": ({"cooldown_seconds": 0}, "cooldown_seconds", "greater than or equal to 10"),
}


@pytest.mark.parametrize("change,field,message", API_BAD.values(), ids=API_BAD.keys())
def test_the_api_refuses_a_malformed_rule_with_400_naming_the_field(admin_client, change, field, message):
    r = admin_client.post("/api/alerts/rules/", {**API_GOOD, **change}, content_type="application/json")
    assert r.status_code == 400, r.content
    body = r.json()
    assert list(body) == [field] and message in body[field][0], body
    assert not AlertRule.objects.filter(name="SlowDatabase").exists()


def test_the_api_creates_reads_changes_and_deletes_rules(admin_client):
    r = admin_client.post("/api/alerts/rules/", API_GOOD, content_type="application/json")
    assert r.status_code == 201, r.content
    created = r.json()
    assert created["updated_by"] == "admin" and created["threshold"] == 500 and created["enabled"] is True
    url = f"/api/alerts/rules/{created['id']}/"
    assert admin_client.get(url).json()["metric"] == "database_latency_ms"
    names = [x["name"] for x in admin_client.get("/api/alerts/rules/").json()["results"]]
    assert names == sorted(["DrawdownLimit", "HighMemory", "ModelDrift", "ServiceDown", "SlowDatabase"])
    assert admin_client.patch(url, {"threshold": "750"}, content_type="application/json").json()["threshold"] == 750
    # A partial change is checked with the rule's other fields.
    drawdown = AlertRule.objects.get(name="DrawdownLimit")
    bad = admin_client.patch(f"/api/alerts/rules/{drawdown.pk}/", {"action": "auto_restart"},
                             content_type="application/json")
    assert bad.status_code == 400 and "cannot act on drawdown_pct" in bad.json()["action"][0]
    bad = admin_client.patch(f"/api/alerts/rules/{drawdown.pk}/", {"threshold": 120},
                             content_type="application/json")
    assert bad.status_code == 400 and "between 0.1 and 100" in bad.json()["threshold"][0]
    drawdown.refresh_from_db()
    assert (drawdown.action, drawdown.threshold) == ("emergency_stop", 10.0)
    put = admin_client.put(url, {**API_GOOD, "threshold": 900.5, "enabled": False}, content_type="application/json")
    assert put.status_code == 200 and put.json()["threshold"] == 900.5 and put.json()["enabled"] is False
    dup = admin_client.post("/api/alerts/rules/", {**API_GOOD}, content_type="application/json")
    assert dup.status_code == 400 and "name" in dup.json()
    assert admin_client.delete(url).status_code == 204
    assert not AlertRule.objects.filter(name="SlowDatabase").exists()


def test_reads_need_a_login_and_writes_need_staff(only, clean_cache):
    get_user_model().objects.create_user("viewer", password="pw-123456")
    viewer = Client()
    viewer.login(username="viewer", password="pw-123456")
    anonymous = Client()
    rule = AlertRule.objects.get(name="DrawdownLimit")
    for url in ("/api/alerts/rules/", f"/api/alerts/rules/{rule.pk}/", "/api/alerts/firings/"):
        assert anonymous.get(url).status_code in (401, 403)
        assert viewer.get(url).status_code == 200
    assert viewer.post("/api/alerts/rules/", API_GOOD, content_type="application/json").status_code == 403
    assert viewer.patch(f"/api/alerts/rules/{rule.pk}/", {"threshold": 50},
                        content_type="application/json").status_code == 403
    assert viewer.delete(f"/api/alerts/rules/{rule.pk}/").status_code == 403
    rule.refresh_from_db()
    assert rule.threshold == 10.0 and AlertRule.objects.count() == 4


def test_firings_are_listed_and_filtered(admin_client, only, clean_cache):
    rules = only("HighMemory", "ServiceDown")
    AlertRule.objects.filter(pk=rules["ServiceDown"].pk).update(action="notify")
    evaluate_rules(graph(memory={"inference": 99.0, "ops": 97.0}, heartbeat={"execution": 30.0}))
    listed = admin_client.get("/api/alerts/firings/").json()["results"]
    assert {(f["rule_name"], f["subject"]) for f in listed} == {
        ("HighMemory", "inference@host1"), ("HighMemory", "ops@host1"), ("ServiceDown", "execution")}
    by_rule = admin_client.get("/api/alerts/firings/", {"rule": rules["ServiceDown"].pk}).json()["results"]
    assert [f["subject"] for f in by_rule] == ["execution"]
    by_subject = admin_client.get("/api/alerts/firings/", {"subject": "ops@host1", "open": "true"}).json()["results"]
    assert [(f["rule_name"], f["value"], f["action_outcome"]) for f in by_subject] == [("HighMemory", 97.0, "done")]
    assert admin_client.get("/api/alerts/firings/", {"rule_name": "HighMemory", "open": "false"}).json()[
        "results"] == []
    bad = admin_client.get("/api/alerts/firings/", {"outcome": "exploded"})
    assert bad.status_code == 400 and "outcome" in bad.json()


# --- the command -----------------------------------------------------------------------------------


def test_setup_alert_rules_restores_the_defaults_only_when_asked():
    AlertRule.objects.filter(name="DrawdownLimit").update(threshold=25.0, enabled=False)
    AlertRule.objects.filter(name="ModelDrift").delete()
    AlertRule.objects.create(name="Mine", metric="queue_depth", threshold=100.0, action="notify")
    call_command("setup_alert_rules")
    assert AlertRule.objects.get(name="DrawdownLimit").threshold == 25.0  # an operator's edit is kept
    assert AlertRule.objects.get(name="ModelDrift").updated_by == "setup_alert_rules"
    call_command("setup_alert_rules", "--reset")
    dd = AlertRule.objects.get(name="DrawdownLimit")
    assert (dd.threshold, dd.enabled, dd.action) == (10.0, True, "emergency_stop")
    assert AlertRule.objects.filter(name="Mine").exists() and AlertRule.objects.count() == 5
