"""Worker heartbeats: every HEARTBEAT_INTERVAL_SECONDS a worker records its vital signs and
publishes `service.heartbeat`, both in one transaction."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import psutil
from django.conf import settings
from django.db import close_old_connections, transaction

from qtweb import metrics
from qtweb.events.schemas import EventType
from qtweb.logging import get_logger

log = get_logger(__name__)


def _process_tree_stats(proc: psutil.Process) -> dict:
    """CPU %, memory % and RSS of a worker's main process and its pool children."""
    procs = [proc]
    try:
        procs += proc.children(recursive=True)
    except psutil.Error:
        pass
    cpu = mem_pct = rss = 0.0
    for p in procs:
        try:
            with p.oneshot():
                cpu += p.cpu_percent(interval=None)
                mem_pct += p.memory_percent()
                rss += p.memory_info().rss
        except psutil.Error:
            continue
    return {
        "cpu_percent": round(cpu, 1),
        "memory_percent": round(min(mem_pct, 100.0), 2),
        "rss_mb": round(rss / 2**20, 1),
    }


def events_processed_last_minute(worker: str) -> int:
    from qtweb.events.models import EventDelivery

    since = datetime.now(UTC) - timedelta(minutes=1)
    return EventDelivery.objects.filter(processed_by=worker, processed_at__gte=since).count()


def beat_once(
    *,
    worker: str,
    service: str,
    queue: str,
    started_at: datetime,
    active_tasks: int,
    proc: psutil.Process,
    processed_by: str,
) -> None:
    from qtweb.events.bus import publish
    from qtweb.health.models import WorkerHeartbeat

    now = datetime.now(UTC)
    stats = _process_tree_stats(proc)
    payload = {
        "service": service,
        "queue": queue,
        "worker": worker,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "uptime_seconds": round((now - started_at).total_seconds(), 1),
        "active_tasks": active_tasks,
        "events_processed_last_minute": events_processed_last_minute(processed_by),
        **stats,
    }
    with transaction.atomic():
        WorkerHeartbeat.objects.update_or_create(
            worker=worker,
            defaults={
                "service": service,
                "queue": queue,
                "host": payload["host"],
                "pid": payload["pid"],
                "started_at": started_at,
                "last_seen": now,
                "stopped_at": None,
                "stats": {
                    k: payload[k]
                    for k in (
                        "cpu_percent",
                        "memory_percent",
                        "rss_mb",
                        "active_tasks",
                        "events_processed_last_minute",
                        "uptime_seconds",
                    )
                },
            },
        )
        publish(EventType.SERVICE_HEARTBEAT, payload, source=service)
    metrics.HEARTBEATS_SENT.labels(service, queue).inc()


def mark_stopped(worker: str) -> None:
    from qtweb.health.models import WorkerHeartbeat

    WorkerHeartbeat.objects.filter(worker=worker).update(stopped_at=datetime.now(UTC))


class HeartbeatThread(threading.Thread):
    """Runs in a worker's main process (not in pool children) until stop() is called."""

    def __init__(self, *, worker: str, queues: list[str], active_tasks_fn):
        from qtweb.queues import service_for_queue

        super().__init__(name=f"heartbeat-{worker}", daemon=True)
        self.worker = worker
        # One heartbeat row per queue this worker consumes (normally exactly one).
        self.targets = [
            (worker if len(queues) == 1 else f"{worker}/{q}", service_for_queue(q).value, q) for q in queues
        ]
        self.active_tasks_fn = active_tasks_fn
        self.started_at = datetime.now(UTC)
        self._stop_event = threading.Event()
        self.proc = psutil.Process()

    def run(self) -> None:
        interval = settings.HEARTBEAT_INTERVAL_SECONDS
        while not self._stop_event.is_set():
            t0 = time.monotonic()
            try:
                close_old_connections()
                for name, service, queue in self.targets:
                    beat_once(
                        worker=name,
                        service=service,
                        queue=queue,
                        started_at=self.started_at,
                        active_tasks=self.active_tasks_fn(),
                        proc=self.proc,
                        processed_by=self.worker,
                    )
            except Exception as exc:  # DB or broker down: keep beating, health shows the cause
                log.warning("heartbeat failed", worker=self.worker, error=repr(exc))
            self._stop_event.wait(max(0.0, interval - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        try:
            for name, _, _ in self.targets:
                mark_stopped(name)
        except Exception as exc:
            log.warning("could not mark worker stopped", worker=self.worker, error=repr(exc))
