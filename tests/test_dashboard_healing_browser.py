"""The dashboard's self-healing panel and the health grid's queue backlog in a real browser (daphne,
Channels, headless Chromium): the actions already recorded are listed on load; an action recorded
through analytics.healing.service.record (which publishes the system.alert) appears without a
reload, over the page's one websocket; each service card lists its queues' backlog from the health
graph and re-reads it every 10 s; DISABLED and CRITICAL statuses from health.status show as such.

Needs /usr/bin/chromium (`make browser` installs it), PostgreSQL and Redis. The fixtures (daphne,
browser) and helpers are those of tests/test_dashboard_browser.py.
"""
from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests import test_dashboard_browser as dashboard_browser
from tests.test_dashboard_browser import CHROMIUM, WAIT_MS, off_loop
from tests.test_dashboard_risk_browser import PASSWORD, _reset_caches, login

daphne_url = dashboard_browser.daphne_url
browser = dashboard_browser.browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (run `make browser`; never `playwright install`)"),
]

# The page re-reads the graph every 10 s (static/dashboard/health-grid.js): one period and some slack.
GRAPH_REFRESH_WAIT_MS = 15_000
# Counts the websockets the page opens: the panels share health-grid.js's one socket.
COUNT_SOCKETS = """
window.__sockets = 0;
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.__sockets += 1; }
};
"""
HOSTILE = '<img src=x onerror="window.__xss = 1">'


@pytest.fixture
def fresh_cache():
    """The graph this test stores lives in Redis, shared with daphne and the tests that follow."""
    off_loop(_reset_caches)
    yield
    off_loop(_reset_caches)


def _seed():
    from django.contrib.auth import get_user_model

    from analytics.models import HealingAction, HealingKind, HealingOutcome

    get_user_model().objects.create_user("healer", password=PASSWORD)
    return HealingAction.objects.create(
        kind=HealingKind.RESTART_WORKER, target="execution", outcome=HealingOutcome.FAILED,
        trigger=f"worker-execution is EXITED {HOSTILE}", result="supervisord unreachable",
        created_at=datetime.now(UTC) - timedelta(minutes=3)).pk


def _store_graph(depth: int, oldest_age_seconds: float | None) -> None:
    """A graph as the monitor stores it (the API serves the stored one), with a known backlog on
    the inference queue."""
    from analytics.health import graph as health_graph

    g = health_graph.build()
    g["queues"]["inference"].update(depth=depth, oldest_age_seconds=oldest_age_seconds)
    health_graph.store(g)


def _record_restart(marker: str) -> int:
    from analytics.healing import service
    from analytics.models import HealingKind, HealingOutcome

    return service.record(HealingKind.RESTART_WORKER, "inference", trigger=f"inference silent for 20s ({marker})",
                          outcome=HealingOutcome.DONE, result="killed pid 4242 (RUNNING); now RUNNING pid 4343",
                          details={"queue": "inference", "program": "worker-inference"}).pk


def test_the_healing_panel_lists_actions_and_follows_new_ones_live(daphne_url, paused_workers, fresh_cache,
                                                                   browser):
    from playwright.sync_api import expect

    seeded = off_loop(_seed)
    off_loop(_store_graph, 7, 95.0)
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    page.add_init_script(COUNT_SOCKETS)
    login(page, daphne_url, "healer")

    # On load: the recorded action, every field shown as text (the hostile trigger included).
    old = page.locator(f"#healing-body tr[data-id='{seeded}']")
    expect(old).to_have_attribute("data-outcome", "failed", timeout=WAIT_MS)
    expect(old.locator(".col-kind")).to_have_text("restart_worker")
    expect(old.locator(".col-target")).to_have_text("execution")
    expect(old.locator(".col-outcome")).to_have_text("failed")
    expect(old.locator(".col-trigger")).to_have_text(f"worker-execution is EXITED {HOSTILE}")
    expect(old.locator(".col-result")).to_have_text("supervisord unreachable")
    expect(page.locator("#healing-empty")).to_be_hidden()
    # The stored graph's backlog on the ai-service card.
    inference = page.locator('.card[data-service="ai-service"] .queues li[data-queue="inference"]')
    expect(inference).to_have_text("inference: 7 waiting, oldest 95 s", timeout=WAIT_MS)
    expect(page.locator('.card[data-service="analytics-os-service"] .queues li')).to_have_count(2)
    expect(page.locator("#ws-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    page.evaluate("window.__notReloaded = true")

    # The monitor's next graph: the backlog drained. Then self-healing acts.
    off_loop(_store_graph, 0, None)
    marker = uuid.uuid4().hex[:6]
    new_id = off_loop(_record_restart, marker)
    new = page.locator("#healing-body tr").first
    expect(new).to_have_attribute("data-id", str(new_id), timeout=WAIT_MS)
    expect(new.locator(".col-kind")).to_have_text("restart_worker")
    expect(new.locator(".col-target")).to_have_text("inference")
    expect(new.locator(".col-outcome")).to_have_text("done")
    expect(new.locator(".col-trigger")).to_have_text(f"inference silent for 20s ({marker})")
    expect(new.locator(".col-result")).to_contain_text("now RUNNING pid 4343")
    expect(page.locator("#healing-body tr")).to_have_count(2)
    # The alert itself is listed with the others too.
    expect(page.locator("#alerts li").first).to_contain_text(f"restart_worker inference: inference silent for 20s "
                                                             f"({marker})")
    expect(inference).to_have_text("inference: 0 waiting", timeout=GRAPH_REFRESH_WAIT_MS)

    # The monitor's statuses: a switched-off service shows DISABLED, a down one CRITICAL (also when
    # sent under the name it had before, UNHEALTHY).
    from qtweb.events.bus import publish

    off_loop(publish, "health.status", {
        "status": "CRITICAL",
        "services": {"ai-service": {"status": "DISABLED", "reason": "switched off (AI_SERVICE_ENABLED=false)"},
                     "exec-risk-service": {"status": "UNHEALTHY", "reason": "execution: no live worker"}},
        "reason": "exec-risk-service: execution: no live worker",
    }, source="analytics-os-service")
    ai = page.locator('.card[data-service="ai-service"]')
    exec_risk = page.locator('.card[data-service="exec-risk-service"]')
    expect(ai).to_have_attribute("data-status", "DISABLED", timeout=WAIT_MS)
    expect(ai.locator(".status")).to_have_text("DISABLED")
    expect(ai.locator(".reason")).to_have_text("switched off (AI_SERVICE_ENABLED=false)")
    expect(exec_risk).to_have_attribute("data-status", "CRITICAL", timeout=WAIT_MS)
    expect(exec_risk.locator(".status")).to_have_text("CRITICAL")

    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
    assert page.evaluate("window.__xss") is None, "a recorded string ran as HTML"
    assert page.evaluate("window.__sockets") == 1, "the panel opened a websocket of its own"
    assert re.fullmatch(r"\d+(\.\d+)?", page.locator("#health-grid").get_attribute("data-graph-age") or "")
    page.screenshot(path="/tmp/dashboard-healing.png", full_page=True)
