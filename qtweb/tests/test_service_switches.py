"""The service switches (README "Service switches"): what a disabled service and the SHADOW
switches do to health, schedules, the outbox, make run's process table and the trade flow.

In-process against PostgreSQL and Redis; the worker-level proof is
tests/test_service_switches_integration.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from qtweb.events import bus
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from qtweb.events.schemas import EventType, build_envelope
from qtweb.queues import Queue
from qtweb.schedules import SCHEDULES

ROOT = Path(__file__).resolve().parents[2]
D = Decimal
ANALYTICS_QUEUES = {Queue.LEARNING.value, Queue.OPS.value}


def _probe(note: str = "") -> dict:
    return {"probe_id": uuid.uuid4().hex, "sent_at": datetime.now(UTC), "note": note}


def _heartbeat_payload() -> dict:
    return {"service": "ai-service", "queue": "inference", "worker": "inference@h", "host": "h", "pid": 1,
            "uptime_seconds": 1.0, "cpu_percent": 0.0, "memory_percent": 1.0, "rss_mb": 10.0, "active_tasks": 0,
            "events_processed_last_minute": 0}


@pytest.fixture
def sent(monkeypatch):
    """What the bus handed to the broker: (subscriber, queue) per send (the broker itself is the
    integration test's business)."""
    calls: list[tuple[str, str]] = []

    def fake_send(delivery_id, subscriber, queue, wire):
        calls.append((subscriber, queue))
        return True

    monkeypatch.setattr(bus, "send_delivery", fake_send)
    return calls


# --- health -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_disabled_service_reads_disabled_and_leaves_the_web_healthy(client, settings, clean_cache):
    from qtweb.health.models import WorkerHeartbeat

    now = datetime.now(UTC)
    for service, queue in (("ai-service", "inference"), ("exec-risk-service", "execution")):
        WorkerHeartbeat.objects.create(worker=f"{queue}@h", service=service, queue=queue, host="h", pid=1,
                                       started_at=now, last_seen=now)
    settings.ANALYTICS_OS_SERVICE_ENABLED = False
    body = client.get("/health").json()
    assert body["services"]["analytics-os-service"]["status"] == "DISABLED"
    assert "ANALYTICS_OS_SERVICE_ENABLED" in body["services"]["analytics-os-service"]["reason"]
    assert body["status"] == "HEALTHY", body["reasons"]
    # The same world with the service on: its missing workers are a fault.
    settings.ANALYTICS_OS_SERVICE_ENABLED = True
    body = client.get("/health").json()
    assert body["services"]["analytics-os-service"]["status"] == "CRITICAL"
    assert body["status"] == "DEGRADED"


# --- schedules --------------------------------------------------------------------------------


def _rows() -> dict:
    from django_celery_beat.models import PeriodicTask

    return {t.name: t for t in PeriodicTask.objects.filter(name__startswith="qt:")}


@pytest.mark.django_db
def test_setup_periodic_tasks_installs_a_disabled_services_schedules_disabled_and_enables_them_again(settings):
    from django_celery_beat.models import PeriodicTask

    settings.ANALYTICS_OS_SERVICE_ENABLED = False
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    analytics = [n for n, s in SCHEDULES.items() if s.queue.value in ANALYTICS_QUEUES and not s.platform]
    assert analytics and f"{len(analytics)} switched off" in out.getvalue()
    rows = _rows()
    for name, sched in SCHEDULES.items():
        row = rows[name]
        if sched.platform:  # the outbox is still swept and pruned, on an enabled service's worker
            assert row.enabled and row.queue == Queue.EXECUTION.value, name
        elif name in analytics:
            assert not row.enabled and row.description.endswith("[switched off: ANALYTICS_OS_SERVICE_ENABLED=false]")
        else:
            assert row.enabled and row.queue == sched.queue.value, name
    # An operator pauses an AI schedule in the admin; the switch must not undo that.
    PeriodicTask.objects.filter(name="qt:ai.universe.scan").update(enabled=False)

    settings.ANALYTICS_OS_SERVICE_ENABLED = True
    call_command("setup_periodic_tasks", stdout=StringIO())
    rows = _rows()
    for name in analytics:
        assert rows[name].enabled and rows[name].description == SCHEDULES[name].description, name
    for name, sched in SCHEDULES.items():
        assert rows[name].queue == sched.queue.value, name  # platform housekeeping back on ops
    assert not rows["qt:ai.universe.scan"].enabled


@pytest.mark.django_db
def test_with_every_service_off_even_the_housekeeping_is_switched_off(settings):
    settings.AI_SERVICE_ENABLED = settings.EXEC_RISK_SERVICE_ENABLED = settings.ANALYTICS_OS_SERVICE_ENABLED = False
    call_command("setup_periodic_tasks", stdout=StringIO())
    assert not any(row.enabled for row in _rows().values())


@pytest.mark.django_db
def test_a_scheduled_run_on_a_disabled_services_queue_is_skipped_and_nothing_else_is(settings):
    """Beat may hold an older schedule (or an admin-added one): the task itself checks. Only a
    run sent by beat (its periodic_task_name header) is skipped; deliveries and RPC run."""
    from qtweb.events.tasks import deliver_event, redispatch_pending_task

    settings.ANALYTICS_OS_SERVICE_ENABLED = False
    by_beat = {"periodic_task_name": "qt:events.redispatch_pending"}
    skipped = redispatch_pending_task.apply(headers=by_beat, routing_key="ops")
    assert skipped.state == "IGNORED" and "analytics-os-service is switched off" in str(skipped.result)
    # The same task where setup_periodic_tasks moved it (execution), or sent by hand: it runs.
    assert redispatch_pending_task.apply(headers=by_beat, routing_key="execution").state == "SUCCESS"
    assert redispatch_pending_task.apply(routing_key="ops").state == "SUCCESS"
    # An event delivery on the disabled service's queue (sent before the switch) still runs.
    delivered = deliver_event.apply(args=(0, "analytics.observer", {}), routing_key="ops")
    assert delivered.state == "SUCCESS"
    settings.ANALYTICS_OS_SERVICE_ENABLED = True
    assert redispatch_pending_task.apply(headers=by_beat, routing_key="ops").state == "SUCCESS"


# --- the outbox -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_deliveries_to_a_disabled_service_wait_unsent_and_go_once_it_is_back(
        settings, sent, django_capture_on_commit_callbacks):
    settings.ANALYTICS_OS_SERVICE_ENABLED = False
    with django_capture_on_commit_callbacks(execute=True):
        env = bus.publish(EventType.PLATFORM_PROBE, _probe())
    rows = {d.subscriber: d for d in EventDelivery.objects.filter(event_id=env.event_id)}
    held = {s for s, d in rows.items() if d.queue in ANALYTICS_QUEUES}
    assert held == {"probe.learning", "analytics.observer"}
    assert sorted(s for s, _ in sent) == sorted(set(rows) - held)  # the others went at once
    for name in held:
        d = rows[name]
        assert d.status == DeliveryStatus.PENDING and d.dispatch_count == 0 and d.attempts == 0
        assert d.last_error == "held: analytics-os-service is switched off (ANALYTICS_OS_SERVICE_ENABLED=false)"
    # The sweep re-sends what is lost on enabled queues, never the held ones.
    sent.clear()
    assert bus.redispatch_pending(older_than_seconds=0) == 2
    assert {q for _, q in sent} == {"inference", "execution"}

    settings.ANALYTICS_OS_SERVICE_ENABLED = True  # the analytics workers start again
    sent.clear()
    bus.redispatch_pending(queues=sorted(ANALYTICS_QUEUES), older_than_seconds=0, reason="worker_start")
    assert sorted(s for s, _ in sent) == sorted(held)
    for d in EventDelivery.objects.filter(event_id=env.event_id, subscriber__in=held):
        assert d.dispatch_count == 1 and d.last_error == "" and d.status == DeliveryStatus.PENDING


def _age(env, hours: float) -> None:
    """Pretend an event and its deliveries were made `hours` ago (rows, not the append-only model)."""
    then = datetime.now(UTC) - timedelta(hours=hours)
    Event.objects.filter(pk=env.event_id).update(timestamp=then)
    EventDelivery.objects.filter(event_id=env.event_id).update(created_at=then, dispatched_at=then)


@pytest.mark.django_db
def test_held_deliveries_expire_after_the_retention_and_then_their_events_are_pruned(
        settings, sent, django_capture_on_commit_callbacks):
    settings.ANALYTICS_OS_SERVICE_ENABLED = False
    assert settings.DISABLED_SERVICE_RETENTION_HOURS == 72 and settings.HEARTBEAT_RETENTION_HOURS == 1
    with django_capture_on_commit_callbacks(execute=True):
        consumed_old = bus.publish(EventType.PLATFORM_PROBE, _probe())
        waiting_old = bus.publish(EventType.PLATFORM_PROBE, _probe())
        recent = bus.publish(EventType.PLATFORM_PROBE, _probe())
        heartbeat = bus.publish(EventType.SERVICE_HEARTBEAT, _heartbeat_payload())
    # The enabled services consumed theirs, except waiting_old's (its worker is down).
    EventDelivery.objects.exclude(queue__in=ANALYTICS_QUEUES).exclude(event_id=waiting_old.event_id).update(
        status=DeliveryStatus.DONE)
    _age(consumed_old, 73)
    _age(waiting_old, 73)
    _age(recent, 2)
    _age(heartbeat, 2)

    bus.prune_processed()

    assert not Event.objects.filter(pk__in=[consumed_old.event_id, heartbeat.event_id]).exists()
    kept = {d.subscriber: d for d in EventDelivery.objects.filter(event_id=waiting_old.event_id)}
    for name in ("probe.learning", "analytics.observer"):
        assert kept[name].status == DeliveryStatus.FAILED
        assert kept[name].last_error == ("expired: analytics-os-service is switched off "
                                         "(ANALYTICS_OS_SERVICE_ENABLED=false) longer than the 72 h retention")
    # An enabled service's pending delivery is owed whatever its age: never expired.
    assert kept["probe.execution"].status == DeliveryStatus.PENDING
    assert set(EventDelivery.objects.filter(event_id=recent.event_id, queue__in=ANALYTICS_QUEUES)
               .values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    # A shorter retention shows the record of what was given up until the event's own retention.
    assert bus.expire_held(retention_hours=1) == 2
    assert Event.objects.filter(pk=recent.event_id).exists()


@pytest.mark.django_db
def test_nothing_expires_while_the_service_is_enabled(settings, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        env = bus.publish(EventType.PLATFORM_PROBE, _probe())
    _age(env, 500)
    assert bus.expire_held() == 0
    assert not EventDelivery.objects.filter(event_id=env.event_id).exclude(status=DeliveryStatus.PENDING).exists()


# --- make run: the process table ----------------------------------------------------------------


def _supervisor_programs(tmp_path: Path, env: dict[str, str]) -> list:
    """deploy/supervisord.conf read by supervisor's own parser, with `env` as the environment."""
    from supervisor.options import ServerOptions, UnhosedConfigParser

    (tmp_path / "deploy").mkdir(exist_ok=True)
    for d in ("var/log", "var/run"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "deploy" / "supervisord.conf"
    shutil.copy(ROOT / "deploy" / "supervisord.conf", conf)
    options = ServerOptions()
    options.here = str(conf.parent)
    options.environ_expansions = {f"ENV_{k}": v for k, v in
                                  {"QT_BIN": "/venv/bin", "QT_EMBEDDED_REDIS": "false", "WEB_BIND": "127.0.0.1",
                                   "QT_WORKER_AUTORESTART": "false", "QT_AUTOSTART_AI": "true",
                                   "QT_AUTOSTART_EXEC_RISK": "true", "QT_AUTOSTART_ANALYTICS": "true", **env}.items()}
    parser = UnhosedConfigParser()
    parser.expansions = options.environ_expansions
    parser.read(str(conf))
    return [p for g in options.process_groups_from_parser(parser) for p in g.process_configs]


def _supervisor_autostart(tmp_path: Path, env: dict[str, str]) -> dict[str, bool]:
    return {p.name: p.autostart for p in _supervisor_programs(tmp_path, env)}


def test_supervisord_leaves_worker_restarts_to_self_healing_except_the_ops_worker(tmp_path):
    from supervisor.datatypes import RestartUnconditionally

    def restarts(value: str) -> dict[str, bool]:
        return {p.name: p.autorestart is RestartUnconditionally
                for p in _supervisor_programs(tmp_path, {"QT_WORKER_AUTORESTART": value})}

    healing = restarts("false")
    assert not any(healing[p] for p in ("worker-inference", "worker-execution", "worker-learning"))
    assert healing["worker-ops"] and healing["web"] and healing["beat"]
    assert all(restarts("true").values())


def test_supervisord_starts_each_worker_only_when_its_service_is_enabled(tmp_path):
    on = _supervisor_autostart(tmp_path, {"QT_AUTOSTART_AI": "true", "QT_AUTOSTART_EXEC_RISK": "true",
                                          "QT_AUTOSTART_ANALYTICS": "true"})
    assert all(on[p] for p in ("worker-inference", "worker-execution", "worker-learning", "worker-ops", "web",
                               "beat"))
    off = _supervisor_autostart(tmp_path, {"QT_AUTOSTART_AI": "false", "QT_AUTOSTART_EXEC_RISK": "true",
                                           "QT_AUTOSTART_ANALYTICS": "false"})
    assert off == {"redis": False, "web": True, "beat": True, "worker-inference": False, "worker-execution": True,
                   "worker-learning": False, "worker-ops": False}


def test_make_run_sets_the_autostart_switches_the_way_every_process_reads_the_settings():
    """The line of `make run` that sets QT_AUTOSTART_*, run as make would run it: django-environ
    reads the variables (false/0/no/off are off; empty or unset is on), as in every process."""
    recipe = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = [line.rstrip().removesuffix("\\").strip() for line in recipe.splitlines()]
    line = next(x for x in lines if "service_switches --export" in x)
    assert lines.index(line) < next(i for i, x in enumerate(lines) if "supervisord -n" in x)
    show = 'echo "$QT_AUTOSTART_AI $QT_AUTOSTART_EXEC_RISK $QT_AUTOSTART_ANALYTICS"'
    script = "\n".join(["set -euo pipefail", line, show])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SERVICE_ENABLED")}
    env.update(DJANGO_SETTINGS_MODULE="qtweb.settings.test", AI_SERVICE_ENABLED="no", EXEC_RISK_SERVICE_ENABLED="",
               ANALYTICS_OS_SERVICE_ENABLED="0")
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "false true false", out.stderr[-2000:]


def test_every_compose_container_gets_the_same_switches():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        if name in ("redis", "postgres"):
            continue
        for var in ("AI_SERVICE_ENABLED", "EXEC_RISK_SERVICE_ENABLED", "ANALYTICS_OS_SERVICE_ENABLED",
                    "AI_SERVICE_SHADOW", "EXEC_RISK_SERVICE_SHADOW", "ANALYTICS_OS_SERVICE_SHADOW"):
            assert svc["environment"][var] == f"${{{var}:-{'false' if 'SHADOW' in var else 'true'}}}", (name, var)


# --- SHADOW -----------------------------------------------------------------------------------


@pytest.fixture
def paper_market(db, settings, clean_cache):
    """The paper exchange with fresh prices and 100k USDT (tests/support/execution.py)."""
    from tests.support.execution import build_market
    from trading.exchanges.account import use_gateway

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    yield build_market()
    use_gateway(None)


def test_exec_risk_shadow_validates_and_plans_but_sends_no_order(paper_market, settings):
    from risk.models import RiskDecision
    from trading.execution.services import intent_create, intent_process
    from trading.models import Order, PaperOrder

    settings.EXEC_RISK_SERVICE_SHADOW = True
    intent, _ = intent_create(key="switch-shadow-1", source="manual", symbol="BTC/USDT:USDT", side="buy",
                              amount=D("0.05"), strategy="twap")
    intent = intent_process(intent.pk)
    assert intent.status == "shadow" and intent.reason.startswith("EXEC_RISK_SERVICE_SHADOW")
    assert intent.strategy == "twap" and len(intent.plan) > 1  # planned, slice by slice
    assert RiskDecision.objects.get(intent_key="switch-shadow-1").approved
    assert PaperOrder.objects.count() == 0 and Order.objects.count() == 0

    # An intent already working when the switch came on sends no further slice.
    from django.utils import timezone

    from trading.execution.services import intent_advance

    working, _ = intent_create(key="switch-shadow-working", source="manual", symbol="BTC/USDT:USDT", side="buy",
                               amount=D("0.05"), strategy="twap")
    working.status, working.strategy, working.next_slice = "working", "twap", 0
    working.plan = [{"index": 0, "amount": "0.05", "not_before": timezone.now().isoformat(), "type": "market"}]
    working.save()
    stopped = intent_advance(working.pk)
    assert stopped.status == "stopped" and "EXEC_RISK_SERVICE_SHADOW" in stopped.reason
    assert PaperOrder.objects.count() == 0

    settings.EXEC_RISK_SERVICE_SHADOW = False  # the same order, switch off: it trades
    intent, _ = intent_create(key="switch-shadow-2", source="manual", symbol="BTC/USDT:USDT", side="buy",
                              amount=D("0.05"), strategy="market")
    assert intent_process(intent.pk).status == "done" and PaperOrder.objects.count() == 1


def _signal(symbol: str = "BTC/USDT:USDT"):
    return build_envelope("signal.generated", {
        "symbol": symbol, "timeframe": "5m", "action": "BUY", "confidence": 0.9, "score": 0.8,
        "ensemble_agreement": 1.0, "models_voted": 4}, trace_id=uuid.uuid4().hex, source="ai-service")


def test_ai_shadow_records_the_sized_decision_and_execution_makes_no_intent_of_it(paper_market, settings):
    from ai.sizing.services import AI_SHADOW_NOTE, size_signal
    from trading.execution.services import intent_from_rl_decision
    from trading.models import ExecutionIntent

    sizing = {"equity_usd": D("100000"), "allowed_size_usd": D("10000"), "drawdown": 0.0, "exposure": 0.0}
    settings.AI_SERVICE_SHADOW = True
    decision = size_signal(_signal(), **sizing)
    stored = Event.objects.get(pk=decision.event_id).payload
    assert stored["shadow"] is True and stored["reason"].startswith(AI_SHADOW_NOTE)
    assert D(stored["final_size_usd"]) > 0  # the sizer did its work
    assert intent_from_rl_decision(decision) is None and not ExecutionIntent.objects.exists()

    settings.AI_SERVICE_SHADOW = False
    decision = size_signal(_signal(), **sizing)
    assert decision.data().shadow is False
    assert intent_from_rl_decision(decision) is not None and ExecutionIntent.objects.count() == 1
