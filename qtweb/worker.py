"""Celery signal hooks: trace ids and task metrics in every task; heartbeats, the health
server, outbox recovery and the apps' worker-ready hooks in every worker; the apps' memo resets
in every forked pool process (the hooks are registered in qtweb/lifecycle.py)."""
from __future__ import annotations

import os
import time

from celery import signals

from qtweb import tracing

_task_started: dict[str, float] = {}
_worker_threads: list = []


# Header with the publish time (epoch seconds): the health graph reads it off the oldest message
# of each queue to tell a queue whose worker stopped consuming (qtweb/health/status.py).
SENT_AT_HEADER = "qt_sent_at"


@signals.before_task_publish.connect
def _stamp_trace_id(headers=None, **_):
    if headers is None:
        return
    headers.setdefault(SENT_AT_HEADER, time.time())
    if not headers.get(tracing.TRACE_HEADER):
        tid = tracing.current_trace_id()
        if tid:
            headers[tracing.TRACE_HEADER] = tid


@signals.task_prerun.connect
def _bind_task_context(task_id=None, task=None, **_):
    import structlog
    from django.db import close_old_connections

    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()  # reuse a healthy connection, replace a stale or broken one

    tid = getattr(task.request, tracing.TRACE_HEADER, None) if task is not None else None
    if not tracing.is_valid_trace_id(tid):
        tid = tracing.new_trace_id()
    tracing.set_trace_id(tid)
    delivery = (task.request.delivery_info or {}) if task is not None else {}
    structlog.contextvars.bind_contextvars(task=task.name if task else None, queue=delivery.get("routing_key"))
    _task_started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _observe_task(task_id=None, task=None, **_):
    import structlog
    from django.db import close_old_connections

    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()

    from qtweb import metrics

    started = _task_started.pop(task_id, None)
    if started is not None and task is not None:
        queue = (task.request.delivery_info or {}).get("routing_key") or "unknown"
        metrics.TASK_LATENCY.labels(task.name, queue).observe(time.perf_counter() - started)
    structlog.contextvars.unbind_contextvars("task", "queue")
    tracing.set_trace_id(None)


@signals.worker_process_shutdown.connect
def _prometheus_child_exit(pid=None, **_):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


@signals.worker_process_init.connect
def _reset_process_memos(**_):
    """In each forked pool process: memos copied from the parent belong to the parent."""
    from qtweb.lifecycle import reset_process_memos

    reset_process_memos()


@signals.celeryd_after_setup.connect
def _name_service(sender=None, instance=None, **_):
    """Before the pool forks: every process of this worker logs under its service's name."""
    from django.conf import settings

    from qtweb.queues import service_for_queue

    queues = sorted(instance.app.amqp.queues.consume_from.keys())
    if queues:
        settings.QT_SERVICE = service_for_queue(queues[0]).value
        os.environ["QT_SERVICE"] = settings.QT_SERVICE


@signals.worker_ready.connect
def _start_worker_services(sender=None, **_):
    from celery.worker import state
    from django.conf import settings
    from django.db import close_old_connections

    from qtweb.events.bus import redispatch_pending
    from qtweb.health.heartbeats import HeartbeatThread
    from qtweb.health.server import HealthServerThread
    from qtweb.lifecycle import run_worker_ready
    from qtweb.logging import get_logger
    from qtweb.queues import SERVICE_PORTS, service_for_queue

    log = get_logger("qtweb.worker")
    node = sender.hostname
    queues = sorted(sender.app.amqp.queues.consume_from.keys())
    service = service_for_queue(queues[0])
    settings.QT_SERVICE = service.value
    import structlog

    structlog.contextvars.bind_contextvars(service=service.value, worker=node)

    # 1. Outbox recovery: whatever the broker held for this queue may be lost (flushed Redis,
    #    crashed worker); send every PENDING delivery again, duplicates are skipped on consume.
    try:
        n = redispatch_pending(queues=queues, older_than_seconds=0, reason="worker_start")
        log.info("worker ready", queues=queues, redispatched=n)
    except Exception as exc:
        log.error("outbox re-dispatch at start failed; the beat sweep will retry", error=repr(exc))
    finally:
        close_old_connections()

    # 2. The apps' start-up hooks for these queues (the execution worker queues a reconciliation
    #    with the exchange before it places any order: trading/apps.py).
    run_worker_ready(queues)

    hb = HeartbeatThread(worker=node, queues=queues, active_tasks_fn=lambda: len(state.active_requests))
    hb.start()
    port = settings.HEALTH_PORT or SERVICE_PORTS[service]
    local = {f"queue:{q}": {"status": "HEALTHY", "consuming": True, "worker": node} for q in queues}
    srv = HealthServerThread(service, port, local)
    srv.start()
    _worker_threads.extend([hb, srv])


@signals.worker_shutdown.connect
def _stop_worker_services(**_):
    for t in _worker_threads:
        try:
            t.stop()
        except Exception:
            pass
    _worker_threads.clear()
