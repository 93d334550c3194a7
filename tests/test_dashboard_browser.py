"""The live dashboard in a real browser: daphne serving the test database, headless Chromium,
events published from this process arriving over the websocket without a reload.

Needs /usr/bin/chromium (`make browser` installs it), PostgreSQL and Redis.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["ai-service", "exec-risk-service", "analytics-os-service"]
WAIT_MS = 10_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (run `make browser`; never `playwright install`)"),
]


# --- helpers -----------------------------------------------------------------------------


def off_loop(fn, *args, **kwargs):
    """Run ORM code in a plain thread. Playwright's sync API keeps an event loop running in
    the test's thread, where Django refuses database calls (SynchronousOnlyOperation)."""
    from django.db import connections

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the browser test needs PostgreSQL (daphne runs in another process)")
    return f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_health(base: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"daphne not healthy after {timeout}s ({last!r}):\n{log_path.read_text()[-3000:]}")


def _heartbeat_payload(worker: str) -> dict:
    return {
        "service": "ai-service", "queue": "inference", "worker": worker, "host": "browser-test", "pid": 4242,
        "uptime_seconds": 30.0, "cpu_percent": 2.0, "memory_percent": 1.0, "rss_mb": 90.0, "active_tasks": 0,
        "events_processed_last_minute": 3,
    }


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daphne_url(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real daphne (HTTP + websockets) on a free port, on the pytest-django test database."""
    from django.conf import settings

    with django_db_blocker.unblock():
        db_url = _database_url()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DJANGO_SETTINGS_MODULE="qtweb.settings.test",
        DATABASE_URL=db_url,
        REDIS_URL=settings.REDIS_URL,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        QT_SERVICE="web",
        PYTHONUNBUFFERED="1",
    )
    # DEBUG is off, so WhiteNoise serves the page's JS/CSS from STATIC_ROOT only (as in
    # production): collect the current sources first, as `make run` does.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=120)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "qtweb.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base, proc, log_path)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def browser():
    """Headless Chromium, per test: its event loop must be gone before pytest-django flushes
    the database at teardown (see off_loop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()


# --- tests -------------------------------------------------------------------------------


def test_anonymous_visit_redirects_to_login(daphne_url, browser):
    page = browser.new_page()
    page.goto(f"{daphne_url}/")
    assert page.url == f"{daphne_url}/accounts/login/?next=/"
    assert page.locator("#id_username").is_visible()


def test_health_grid_updates_live_from_heartbeat_and_health_status_events(daphne_url, paused_workers, browser):
    from playwright.sync_api import expect

    from qtweb.events.bus import publish
    from qtweb.health.models import WorkerHeartbeat

    def seed():
        from django.contrib.auth import get_user_model

        now = datetime.now(UTC)
        get_user_model().objects.create_user("operator", password="op-pass-9876", is_staff=True)
        # ai-service: its only worker beat two minutes ago -> CRITICAL; exec-risk: fresh -> HEALTHY;
        # analytics-os-service: never reported -> CRITICAL.
        WorkerHeartbeat.objects.create(worker="inference@old", service="ai-service", queue="inference", host="h",
                                       pid=1, started_at=now - timedelta(hours=1),
                                       last_seen=now - timedelta(seconds=120))
        WorkerHeartbeat.objects.create(worker="execution@fresh", service="exec-risk-service", queue="execution",
                                       host="h", pid=2, started_at=now - timedelta(hours=1), last_seen=now)

    off_loop(seed)

    page = browser.new_page(viewport={"width": 1100, "height": 650})
    page.goto(f"{daphne_url}/accounts/login/?next=/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "op-pass-9876")
    page.click("input[type=submit]")
    page.wait_for_url(f"{daphne_url}/", timeout=WAIT_MS)

    cards = page.locator("#health-grid .card")
    expect(cards).to_have_count(3)
    assert [cards.nth(i).get_attribute("data-service") for i in range(3)] == SERVICES
    for name in SERVICES:
        expect(page.locator(f'.card[data-service="{name}"] h2')).to_have_text(name)
    ai = page.locator('.card[data-service="ai-service"]')
    exec_risk = page.locator('.card[data-service="exec-risk-service"]')
    analytics = page.locator('.card[data-service="analytics-os-service"]')
    expect(ai).to_have_attribute("data-status", "CRITICAL")
    expect(ai.locator(".age-value")).to_have_text(re.compile(r"^1[2-5]\d(\.\d)? s ago$"))
    expect(exec_risk).to_have_attribute("data-status", "HEALTHY")
    expect(analytics).to_have_attribute("data-status", "CRITICAL")
    expect(analytics.locator(".age-value")).to_have_text("never")
    # The websocket is open (and the snapshot applied) before anything is published.
    expect(page.locator("#ws-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)

    page.evaluate("window.__notReloaded = true")
    worker = f"inference@browser-{uuid.uuid4().hex[:6]}"
    reason = f"execution queue slow ({uuid.uuid4().hex[:6]})"
    off_loop(publish, "service.heartbeat", _heartbeat_payload(worker), source="ai-service")
    off_loop(publish, "health.status", {
        "status": "DEGRADED",
        "services": {
            "ai-service": {"status": "HEALTHY", "heartbeat_age_seconds": 0.0},
            "exec-risk-service": {"status": "DEGRADED", "heartbeat_age_seconds": 20.0, "reason": reason},
        },
        "reason": f"exec-risk-service: {reason}",
    }, source="analytics-os-service")

    expect(ai).to_have_attribute("data-last-worker", worker, timeout=WAIT_MS)  # our heartbeat, not another's
    expect(ai.locator(".age-value")).to_have_text(re.compile(r"^[0-3] s ago$"), timeout=WAIT_MS)
    expect(ai).to_have_attribute("data-status", "HEALTHY", timeout=WAIT_MS)
    expect(ai.locator(".status")).to_have_text("HEALTHY")
    expect(exec_risk).to_have_attribute("data-status", "DEGRADED", timeout=WAIT_MS)
    expect(exec_risk.locator(".status")).to_have_text("DEGRADED")
    expect(exec_risk.locator(".reason")).to_have_text(reason, timeout=WAIT_MS)
    # Not in the event: left as it was.
    expect(analytics).to_have_attribute("data-status", "CRITICAL")
    # The age keeps counting in the page between heartbeats.
    page.wait_for_function(
        """() => parseFloat(document.querySelector('.card[data-service="ai-service"] .age-value').dataset.age) >= 1""",
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
    page.screenshot(path="/tmp/dashboard.png", full_page=True)


def test_heartbeat_age_of_a_two_queue_service_stays_that_of_its_stalest_queue(daphne_url, paused_workers, browser):
    """analytics-os-service consumes learning and ops; its age (as /health, the page's first
    render and the snapshot define it) is that of the stalest queue. A beat from the ops worker
    must not make the card claim a fresh heartbeat while learning stays silent."""
    from playwright.sync_api import expect

    from qtweb.events.bus import publish
    from qtweb.health.models import WorkerHeartbeat

    def seed():
        from django.contrib.auth import get_user_model

        now = datetime.now(UTC)
        get_user_model().objects.create_user("operator", password="op-pass-9876", is_staff=True)
        for queue, age in (("learning", 300), ("ops", 2)):
            WorkerHeartbeat.objects.create(worker=f"{queue}@seed", service="analytics-os-service", queue=queue,
                                           host="h", pid=3, started_at=now - timedelta(hours=1),
                                           last_seen=now - timedelta(seconds=age))

    off_loop(seed)
    page = browser.new_page()
    page.goto(f"{daphne_url}/accounts/login/?next=/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "op-pass-9876")
    page.click("input[type=submit]")
    page.wait_for_url(f"{daphne_url}/", timeout=WAIT_MS)
    expect(page.locator("#ws-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    card = page.locator('.card[data-service="analytics-os-service"]')
    expect(card).to_have_attribute("data-status", "CRITICAL")
    expect(card.locator(".age-value")).to_have_text(re.compile(r"^3\d\d(\.\d)? s ago$"))

    worker = f"ops@browser-{uuid.uuid4().hex[:6]}"
    payload = {**_heartbeat_payload(worker), "service": "analytics-os-service", "queue": "ops"}
    off_loop(publish, "service.heartbeat", payload, source="analytics-os-service")
    expect(card).to_have_attribute("data-last-worker", worker, timeout=WAIT_MS)
    page.wait_for_timeout(1100)  # one tick of the page's age timer
    expect(card.locator(".age-value")).to_have_text(re.compile(r"^3\d\d s ago$"))
    expect(card).to_have_attribute("data-status", "CRITICAL")
