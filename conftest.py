"""Fixtures shared by every test: the test Redis, and real Celery workers (one per queue)
started as subprocesses against the same PostgreSQL test database as the test."""
from __future__ import annotations

import pytest

from tests.support.workers import QUEUES, WorkerSet


@pytest.fixture(autouse=True)
def _forget_process_memos():
    """Per-process memos (the day's starting equity, leverage already set on the exchange, the
    first reconciliation, the sizing inputs, the policy) describe one database; each test builds
    its own. The apps register their resets in AppConfig.ready (qtweb/lifecycle.py)."""
    yield
    from qtweb.lifecycle import reset_process_memos

    reset_process_memos()


# Tries of the database flush that ends each transactional test (see below).
FLUSH_ATTEMPTS = 5


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_deadlocks():
    """The flush after a transactional test TRUNCATEs every table in one statement while the
    real workers keep writing (a heartbeat updates its row and publishes an event in one
    transaction). PostgreSQL then sometimes breaks a deadlock by aborting the flush, which
    rolls back whole; it is simply run again. Test-only: nothing in the product flushes."""
    import time

    from django.core.management.base import CommandError
    from django.core.management.commands import flush

    original = flush.Command.handle

    def handle(self, **options):
        for attempt in range(1, FLUSH_ATTEMPTS + 1):
            try:
                return original(self, **options)
            except CommandError as exc:
                if "deadlock detected" not in str(exc.__cause__ or "") or attempt == FLUSH_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)

    flush.Command.handle = handle
    yield
    flush.Command.handle = original


# How long a test's leftover deliveries may take to drain before its database is flushed.
QUIET_TIMEOUT_SECONDS = 30


@pytest.fixture(autouse=True)
def _workers_quiet_before_flush(request):
    """A test with real workers ends while they may still consume its events (a feed pass
    publishes a bar per symbol, each to several subscribers). The flush after a transactional
    test TRUNCATEs every table at once, and a worker transaction holding one table while
    reading another deadlocked with it. So the test's deliveries drain first. (This fixture is
    torn down before pytest-django's database fixtures: plugin autouse fixtures are set up
    first.)"""
    yield
    if "celery_workers" not in request.fixturenames:
        return
    from tests.support.waiting import wait_for

    def quiet() -> bool:
        from qtweb.events.models import DeliveryStatus, EventDelivery

        return not EventDelivery.objects.filter(status=DeliveryStatus.PENDING).exists()

    wait_for(quiet, timeout=QUIET_TIMEOUT_SECONDS, poll=0.2)


@pytest.fixture
def clean_cache():
    """The app's cache keys (the risk policy and mode, the account snapshot, sizing memos) live
    in Redis, which outlives each test's database and each test run: a test that goes through
    those services asks for this, so it neither sees nor leaves another test's values.

    Not autouse: pure tests should not need Redis."""
    from risk.services.policy import policy_invalidate
    from tests.support.execution import clear_app_cache

    clear_app_cache()
    policy_invalidate()
    yield
    clear_app_cache()
    policy_invalidate()


@pytest.fixture
def redis_conn(settings):
    import redis

    conn = redis.Redis.from_url(settings.REDIS_URL)
    yield conn
    conn.close()


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("integration tests need PostgreSQL (set TEST_DATABASE_URL)")
    return f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


# Where the running WorkerSet is kept, so a test that needs a world without live heartbeats
# (the dashboard's browser test) can pause the workers and bring them back.
WORKERS_STASH = pytest.StashKey()


@pytest.fixture(scope="session")
def celery_workers(request, django_db_setup, django_db_blocker, tmp_path_factory):
    """The four workers, up for the whole session. Tests using them need `transactional_db`
    (the workers read only what the test committed)."""
    from django.conf import settings

    with django_db_blocker.unblock():
        db_url = _database_url()
    log_dir = tmp_path_factory.mktemp("worker-logs")
    ws = WorkerSet(db_url, settings.REDIS_URL, log_dir)
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    for q in QUEUES:
        ws.start(q)
    try:
        with django_db_blocker.unblock():
            ws.wait_ready()
        request.session.stash[WORKERS_STASH] = ws
        yield ws
    finally:
        if WORKERS_STASH in request.session.stash:
            del request.session.stash[WORKERS_STASH]
        ws.stop_all()


@pytest.fixture
def paused_workers(request, django_db_blocker):
    """Stop the session's real workers (if running) for one test and restart them after."""
    ws = request.session.stash.get(WORKERS_STASH, None)
    if ws is None:
        yield
        return
    import threading

    queues = [node.split("@", 1)[0] for node in list(ws.procs)]
    ws.stop_all()

    def forget_heartbeats():  # in a thread: a browser test's event loop may own this one
        from django.db import connection

        from qtweb.health.models import WorkerHeartbeat

        with django_db_blocker.unblock():
            WorkerHeartbeat.objects.all().delete()  # a world where no worker has reported
        connection.close()

    try:
        t = threading.Thread(target=forget_heartbeats)
        t.start()
        t.join()
        yield
    finally:
        for q in queues:
            ws.start(q)
        with django_db_blocker.unblock():
            ws.wait_ready()
