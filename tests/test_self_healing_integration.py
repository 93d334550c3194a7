"""Self-healing with real workers under a real supervisord, on PostgreSQL and Redis.

The health monitor runs as the real task on the real ops worker (sent every 2 s, as beat would
every 5 s); it restarts workers through supervisord's XML-RPC interface.
"""
from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime

import pytest

from tests.support.supervised import Supervised
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(420), pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("integration tests need PostgreSQL")
    return f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def supervised_env(**extra) -> dict:
    from django.conf import settings

    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DJANGO_SETTINGS_MODULE="qtweb.settings.test", DATABASE_URL=_database_url(),
               REDIS_URL=settings.REDIS_URL, PYTHONUNBUFFERED="1",
               # Only what these tests heal: no execution worker, so no REDUCE_ONLY noise.
               EXEC_RISK_SERVICE_ENABLED="false", **{k: str(v) for k, v in extra.items()})
    return env


def start(tmp_path, **extra) -> Supervised:
    import redis
    from django.conf import settings

    from analytics.models import AlertRule

    AlertRule.objects.all().delete()  # self-healing's own checks are under test here, not the rules
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    sup = Supervised(tmp_path, supervised_env(**extra))
    sup.start()
    try:
        up = wait_for(lambda: beating("inference") and beating("ops") and beating("learning"), timeout=90, poll=0.5)
        assert up, sup.log_tail("inference")
    except AssertionError:
        sup.stop()
        raise
    sup.drive_monitor()
    return sup


def beating(queue: str, *, since: datetime | None = None, not_pid: int | None = None) -> bool:
    from qtweb.health.models import WorkerHeartbeat

    row = WorkerHeartbeat.objects.filter(worker=f"{queue}@sup", stopped_at__isnull=True).first()
    if row is None or (datetime.now(UTC) - row.last_seen).total_seconds() > 15:
        return False
    return (since is None or row.last_seen > since) and (not_pid is None or row.pid != not_pid)


def alerts_about(text: str, since: datetime):
    from qtweb.events.models import Event

    return Event.objects.filter(type="system.alert", timestamp__gte=since, payload__message__icontains=text)


def first_alert_after(text: str, since: datetime, timeout: float) -> float:
    assert wait_for(lambda: alerts_about(text, since).exists(), timeout=timeout, poll=0.2)
    return (alerts_about(text, since).order_by("timestamp").first().timestamp - since).total_seconds()


@pytest.fixture
def supervised(tmp_path, paused_workers):
    started = []

    def go(**extra):
        sup = start(tmp_path, **extra)
        started.append(sup)
        return sup

    yield go
    for sup in started:
        sup.stop()


def test_a_worker_killed_with_sigkill_is_alerted_within_20s_and_beats_again_within_60s(supervised):
    from analytics.models import HealingAction

    sup = supervised()
    old = sup.pid("inference")
    killed_at = datetime.now(UTC)
    os.kill(old, signal.SIGKILL)
    alert_s = first_alert_after("inference", killed_at, timeout=20)
    assert wait_for(lambda: beating("inference", since=killed_at, not_pid=old), timeout=60, poll=0.5)
    back_s = (datetime.now(UTC) - killed_at).total_seconds()
    print(f"\nSIGKILL: alert after {alert_s:.1f}s, heartbeats again after {back_s:.1f}s")
    assert alert_s <= 20 and back_s <= 60
    action = HealingAction.objects.filter(kind="restart_worker", target="inference", outcome="done").latest(
        "created_at")
    assert "worker-inference" in action.trigger or "EXITED" in action.trigger, action.trigger
    # A worker beats within supervisord's 2 s STARTING window; RUNNING follows once that passes.
    assert wait_for(lambda: sup.info("inference")["statename"] == "RUNNING", timeout=10, poll=0.25)


def test_a_frozen_worker_is_restarted_through_supervisord_and_healthy_within_60s(supervised):
    from analytics.health.graph import latest
    from analytics.models import HealingAction

    sup = supervised()
    old = sup.pid("inference")
    frozen_at = datetime.now(UTC)
    os.kill(old, signal.SIGSTOP)
    try:
        assert wait_for(lambda: HealingAction.objects.filter(kind="restart_worker", target="inference", outcome="done",
                                                      created_at__gte=frozen_at).exists(), timeout=40, poll=0.5)
        detected_s = (HealingAction.objects.filter(kind="restart_worker", target="inference", created_at__gte=frozen_at)
                      .earliest("created_at").created_at - frozen_at).total_seconds()

        def healthy_again() -> bool:
            g = latest()
            return (beating("inference", since=frozen_at, not_pid=old) and g is not None
                    and g["queues"]["inference"]["status"] == "HEALTHY"
                    and datetime.fromisoformat(g["generated_at"]) > frozen_at)

        assert wait_for(healthy_again, timeout=60, poll=0.5)
        healthy_s = (datetime.now(UTC) - frozen_at).total_seconds()
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    print(f"\nSIGSTOP: restarted after {detected_s:.1f}s, HEALTHY after {healthy_s:.1f}s")
    action = HealingAction.objects.filter(kind="restart_worker", target="inference").earliest("created_at")
    assert "no heartbeat" in action.trigger and f"killed pid {old}" in action.result
    assert healthy_s <= 60
    with pytest.raises(ProcessLookupError):
        os.kill(old, 0)  # the frozen process is gone, not left behind
    assert first_alert_after("inference", frozen_at, timeout=1) <= detected_s + 1


def test_a_worker_that_keeps_dying_is_restarted_at_most_n_times_then_left_down_with_an_operator_alert(supervised,
                                                                                                     settings):
    from analytics.models import HealingAction

    n = 2
    sup = supervised(SELF_HEALING_MAX_RESTARTS=n, SELF_HEALING_RESTART_COOLDOWN_SECONDS=5)
    began = datetime.now(UTC)
    for _ in range(n + 1):
        pid = sup.pid("inference")
        died = datetime.now(UTC)
        os.kill(pid, signal.SIGKILL)
        # Back means beating and RUNNING to supervisord: a process killed while still STARTING (its
        # first 2 s) is retried by supervisord itself, and that death would never reach self-healing.
        assert wait_for(lambda p=pid, d=died: (beating("inference", since=d, not_pid=p)
                                               and sup.info("inference")["statename"] == "RUNNING")
                        or HealingAction.objects.filter(kind="give_up", target="inference").exists(),
                        timeout=60, poll=0.5)
    assert wait_for(lambda: HealingAction.objects.filter(kind="give_up", target="inference").exists(),
                    timeout=30, poll=0.5)
    give_up = HealingAction.objects.get(kind="give_up", target="inference")
    restarts = HealingAction.objects.filter(kind="restart_worker", target="inference", outcome="done",
                                            created_at__gte=began)
    assert restarts.count() == n
    assert alerts_about("give_up inference", began).filter(payload__severity="critical").exists()
    assert "an operator must" in give_up.result
    time.sleep(15)  # several monitor passes: nothing restarts it
    assert sup.info("inference")["statename"] != "RUNNING"
    assert restarts.count() == n
    assert not beating("inference", since=give_up.created_at)

    # The operator fixes it and resumes (as the admin and the API do, from the web process):
    # self-healing starts it and watches it again.
    from analytics.healing import service

    settings.PROCESS_MANAGER, settings.SUPERVISOR_SOCKET = "supervisor", str(sup.socket)
    resumed = service.resume("inference", by="operator", reason="fixed the cause")
    assert resumed.kind == "resume"
    assert wait_for(lambda: beating("inference", since=resumed.created_at), timeout=60, poll=0.5)
    assert service.given_up("inference") is None


def test_a_frozen_ops_worker_where_self_healing_runs_is_restarted_by_the_learning_workers_watchdog(supervised):
    from analytics.models import HealingAction

    sup = supervised()
    old = sup.pid("ops")
    frozen_at = datetime.now(UTC)
    os.kill(old, signal.SIGSTOP)
    try:
        assert wait_for(lambda: HealingAction.objects.filter(kind="restart_worker", target="ops", outcome="done",
                                                             created_at__gte=frozen_at).exists(), timeout=75, poll=0.5)
        assert wait_for(lambda: beating("ops", since=frozen_at, not_pid=old), timeout=60, poll=0.5)
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    took = (datetime.now(UTC) - frozen_at).total_seconds()
    print(f"\nops SIGSTOP: beating again after {took:.1f}s")
    action = HealingAction.objects.get(kind="restart_worker", target="ops", created_at__gte=frozen_at)
    assert action.details["watchdog"] is True and "has not beaten" in action.trigger
