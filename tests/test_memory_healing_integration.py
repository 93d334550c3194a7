"""A worker whose memory passes the threshold has its pool restarted (real worker, real broker)."""
from __future__ import annotations

import psutil
import pytest

from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def pool_pids(ws, node: str) -> set[int]:
    return {c.pid for c in psutil.Process(ws.procs[node].pid).children(recursive=True)}


def test_a_worker_over_the_memory_threshold_gets_its_pool_restarted_once_per_cooldown(celery_workers, settings,
                                                                                    clean_cache):
    from analytics.health import monitor
    from analytics.health.graph import build
    from analytics.models import AlertRule, HealingAction

    AlertRule.objects.all().delete()
    settings.PROCESS_MANAGER = "none"
    settings.QUEUE_STUCK_SECONDS = 10**9  # messages earlier tests left on the broker are not this test's
    node = "inference@test"
    assert wait_for(lambda: (build()["workers"].get(node) or {}).get("memory_percent"), timeout=30, poll=0.5)
    mem = build()["workers"][node]["memory_percent"]
    before = pool_pids(celery_workers, node)
    assert before
    # The threshold under what the worker really uses: the real heartbeat's measurement trips it.
    settings.SELF_HEALING_MEMORY_THRESHOLD_PCT = mem / 2
    out = monitor.evaluate()
    graph = out["graph"]
    assert graph["workers"][node]["status"] == "DEGRADED"
    assert f"> {mem / 2:g}%" in graph["workers"][node]["reasons"][0]
    action = HealingAction.objects.get(kind="restart_pool", target=node)
    assert action.outcome == "done", action.result
    assert action.details["memory_percent"] >= mem / 2
    assert wait_for(lambda: pool_pids(celery_workers, node) and not (pool_pids(celery_workers, node) & before),
                    timeout=30, poll=0.5)
    # The worker's main process is the same one: only its pool was replaced.
    assert celery_workers.procs[node].poll() is None
    monitor.evaluate()  # still over, but the reading may predate the pool restart: nothing more yet
    assert HealingAction.objects.filter(kind="restart_pool", target=node).count() == 1
    assert not HealingAction.objects.filter(kind="restart_worker", target="inference").exists()
