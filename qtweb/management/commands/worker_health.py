"""`manage.py worker_health --queue Q [--kill]`: is this host's worker on Q alive and consuming?

Made for docker-compose's healthcheck, where no process manager can be called: a worker whose
heartbeat is older than HEARTBEAT_STALE_SECONDS (dead, or frozen: the heartbeat thread runs in
its main process) or whose queue is stuck (the oldest message waited past the queue's limit
while it beats) is unhealthy. With --kill the unhealthy worker is ended with SIGKILL, so the
container exits and its restart policy starts it again (docs/OPERATIONS.md). Exit status 0 when
healthy, 1 when not, with the reason on stdout.
"""
from __future__ import annotations

import os
import signal
import socket
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from qtweb.queues import Queue


class Command(BaseCommand):
    help = "Exit 1 (and with --kill end the worker) when this host's worker on --queue is dead, frozen or stuck."

    def add_arguments(self, parser):
        parser.add_argument("--queue", required=True, help=f"one of {', '.join(q.value for q in Queue)}")
        parser.add_argument("--kill", action="store_true", help="SIGKILL the worker when unhealthy")

    def handle(self, *args, queue: str, kill: bool, **options):
        if queue not in {q.value for q in Queue}:
            raise CommandError(f"--queue: unknown queue {queue!r}; known: {', '.join(q.value for q in Queue)}")
        problem, pid = self.diagnose(queue)
        if not problem:
            self.stdout.write(f"healthy: {queue} worker pid {pid} beating and consuming")
            return
        self.stdout.write(f"unhealthy: {problem}")
        if kill and pid:
            try:
                os.kill(pid, signal.SIGKILL)  # Celery's pool processes die with it (PDEATHSIG)
                self.stdout.write(f"killed pid {pid}")
            except ProcessLookupError:
                pass
        raise SystemExit(1)

    @staticmethod
    def diagnose(queue: str) -> tuple[str, int | None]:
        from analytics.health.graph import stuck_after_seconds
        from qtweb.health.models import WorkerHeartbeat
        from qtweb.health.status import queue_backlog

        host = socket.gethostname()
        row = (WorkerHeartbeat.objects.filter(queue=queue, host=host, stopped_at__isnull=True)
               .order_by("-last_seen").first())
        if row is None:
            return f"no heartbeat from a {queue} worker on {host}", None
        age = (datetime.now(UTC) - row.last_seen).total_seconds()
        if age > settings.HEARTBEAT_STALE_SECONDS:
            stale = settings.HEARTBEAT_STALE_SECONDS
            return f"{row.worker} (pid {row.pid}) last beat {age:.0f}s ago (> {stale:g}s)", row.pid
        oldest = queue_backlog().get(queue, {}).get("oldest_age_seconds")
        limit = stuck_after_seconds(queue)
        if oldest is not None and oldest > limit:
            return f"{queue} is stuck: its oldest message has waited {oldest:.0f}s (> {limit:.0f}s)", row.pid
        return "", row.pid
