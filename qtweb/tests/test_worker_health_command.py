"""manage.py worker_health: the docker-compose healthcheck's verdict on this host's worker."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from qtweb.health.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def run(queue: str, *extra) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("worker_health", "--queue", queue, *extra, stdout=out)
        return 0, out.getvalue()
    except SystemExit as exc:
        return int(exc.code), out.getvalue()


def beat(age: float, pid: int = 4242) -> None:
    now = datetime.now(UTC)
    WorkerHeartbeat.objects.create(worker="inference@me", service="ai-service", queue="inference",
                                   host=socket.gethostname(), pid=pid, started_at=now,
                                   last_seen=now - timedelta(seconds=age))


def test_no_worker_on_this_host_is_unhealthy():
    code, out = run("inference")
    assert code == 1 and "no heartbeat from a inference worker" in out


def test_a_fresh_heartbeat_and_an_empty_queue_is_healthy(redis_conn):
    redis_conn.delete("inference")
    beat(2.0)
    assert run("inference") == (0, "healthy: inference worker pid 4242 beating and consuming\n")


def test_a_stale_heartbeat_is_unhealthy_and_kill_ends_that_process():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        beat(20.0, pid=victim.pid)
        code, out = run("inference", "--kill")
        assert code == 1 and "last beat 20s ago (> 15s)" in out and f"killed pid {victim.pid}" in out
        assert victim.wait(timeout=5) == -9
    finally:
        victim.kill()


def test_a_stuck_queue_is_unhealthy(redis_conn, settings):
    settings.QUEUE_STUCK_SECONDS = 60
    beat(1.0)
    redis_conn.delete("inference")
    redis_conn.lpush("inference", json.dumps({"headers": {"qt_sent_at": time.time() - 120}, "body": ""}))
    try:
        code, out = run("inference")
    finally:
        redis_conn.delete("inference")
    assert code == 1 and "inference is stuck: its oldest message has waited 120s (> 60s)" in out


def test_an_unknown_queue_is_refused_by_name():
    with pytest.raises(CommandError, match="--queue: unknown queue 'nope'"):
        call_command("worker_health", "--queue", "nope")
