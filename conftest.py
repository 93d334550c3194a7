"""Fixtures shared by every test: the test Redis, and real Celery workers (one per queue)
started as subprocesses against the same PostgreSQL test database as the test."""
from __future__ import annotations

import pytest

from tests.support.workers import QUEUES, WorkerSet


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


@pytest.fixture(scope="session")
def celery_workers(django_db_setup, django_db_blocker, tmp_path_factory):
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
        yield ws
    finally:
        ws.stop_all()
