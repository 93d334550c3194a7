"""Who heals the healer: the learning worker watches the ops worker.

Self-healing runs in the ops worker's health pass, so a frozen ops worker (alive, its pid
unchanged, supervisord content) would stop every pass and nothing would notice. The learning
worker, the other half of the analytics-os service, runs this small thread in its main process:
when the ops worker has not beaten for twice HEARTBEAT_STALE_SECONDS, it restarts it through the
same guarded path as every other restart (cooldown, start-up grace, a recorded action and alert).
A dead ops worker needs none of this: supervisord's autorestart brings it back.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime

from django.conf import settings

from qtweb.logging import get_logger

log = get_logger(__name__)

CHECK_EVERY_SECONDS = 10.0


def check_ops() -> object | None:
    """One look at the ops worker; the restart action when one was taken."""
    from analytics.healing.service import SELF_QUEUE, restart_queue_worker
    from qtweb.health.models import WorkerHeartbeat
    from qtweb.queues import Service, service_enabled

    if not service_enabled(Service.ANALYTICS):
        return None
    last = (WorkerHeartbeat.objects.filter(queue=SELF_QUEUE, stopped_at__isnull=True)
            .order_by("-last_seen").values_list("worker", "last_seen").first())
    if last is None:
        return None  # never reported: still starting, and supervisord starts it
    age = (datetime.now(UTC) - last[1]).total_seconds()
    if age <= 2 * settings.HEARTBEAT_STALE_SECONDS:
        return None
    return restart_queue_worker(
        SELF_QUEUE, trigger=f"the ops worker, where self-healing runs, has not beaten for {age:.0f}s "
                            f"(seen by the learning worker's watchdog)",
        details={"worker": last[0], "heartbeat_age_seconds": round(age, 1), "watchdog": True,
                 "service": Service.ANALYTICS.value})


class OpsWatchdog(threading.Thread):
    def __init__(self, every: float = CHECK_EVERY_SECONDS):
        super().__init__(name="ops-watchdog", daemon=True)
        self.every = every
        self._stop_event = threading.Event()

    def run(self) -> None:
        from django.db import close_old_connections

        while not self._stop_event.wait(self.every):
            try:
                close_old_connections()
                check_ops()
            except Exception as exc:  # the database or Redis is down: the next look tries again
                log.warning("ops watchdog check failed", error=repr(exc))

    def stop(self) -> None:
        self._stop_event.set()


_watchdog: OpsWatchdog | None = None


def start() -> None:
    """Worker-ready hook of the learning queue (analytics/apps.py)."""
    global _watchdog
    if _watchdog is None:
        _watchdog = OpsWatchdog()
        _watchdog.start()
