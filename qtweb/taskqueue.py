"""Celery tasks declared with their queue: `@queue_task(Queue.EXECUTION, name="trading.reconcile")`.

The decorator records the route (full task name -> queue) here, and qtweb/celery.py routes every
message from this table, so a task's queue is written where the task is and its name only has
to say which app owns it. An explicit apply_async(queue=...) still wins: the event bus and RPC
send that way to a subscriber's or a service's queue.

The queue is kept out of the Celery task itself (no queue= on shared_task): Celery 5.7
deprecates routing attributes on the task decorator and 6.0 ignores them.

Every such task runs through SwitchedTask: a run sent by beat (django-celery-beat stamps the
`periodic_task_name` header) onto the queue of a service switched off (<SERVICE>_ENABLED=false)
is ignored without running, with a log line. Event deliveries and RPC carry no such header and
always run.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore

from qtweb.logging import get_logger
from qtweb.queues import Queue, queue_enabled, service_for_queue

log = get_logger(__name__)

# A message is acknowledged only once its task finished, so a worker that dies mid-order leaves
# it on the queue; every execution task must therefore be idempotent (client order ids,
# processed markers). Prefetch 1 is set on the execution worker's command line
# (deploy/supervisord.conf, docker-compose.yml) so one slow order never holds others.
EXECUTION_TASK_OPTIONS: dict[str, bool] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
}

_routes: dict[str, Queue] = {}

# The header django-celery-beat's scheduler puts on every task it sends (the PeriodicTask's name).
PERIODIC_TASK_HEADER = "periodic_task_name"


def scheduled_run_skip_reason(task: Task) -> str | None:
    """Why this run of `task` must not run: it was sent by beat onto the queue of a disabled
    service (beat may run an older schedule than setup_periodic_tasks installed, or one added
    in the admin). None for every other run: an event delivery, an RPC, a call by hand."""
    request = task.request
    schedule = getattr(request, PERIODIC_TASK_HEADER, None) or (getattr(request, "headers", None) or {}).get(
        PERIODIC_TASK_HEADER)
    if not schedule:
        return None
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or _routes.get(task.name)
    if queue is None or queue not in {q.value for q in Queue} or queue_enabled(queue):
        return None
    return f"scheduled run of {schedule} skipped: {service_for_queue(queue).value} is switched off"


class SwitchedTask(Task):
    """The base of every @queue_task: a beat-sent run on a disabled service's queue is skipped.

    The check sits in before_start, where Celery's tracer accepts Ignore (state IGNORED, no
    retry, no error): overriding __call__ instead would push a second request context."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        reason = scheduled_run_skip_reason(self)
        if reason is not None:
            log.info("task skipped: service switched off", task=self.name, reason=reason)
            raise Ignore(reason)


def queue_task(queue: Queue, *, name: str, **options: Any) -> Callable[[Callable], Any]:
    """`celery.shared_task(name=name, **options)` whose messages go to `queue`.

    Tasks on the execution queue get EXECUTION_TASK_OPTIONS; passing a different value for one
    of them is refused rather than silently overridden.
    """
    queue = Queue(queue)
    if queue is Queue.EXECUTION:
        conflicting = {k: v for k, v in options.items() if EXECUTION_TASK_OPTIONS.get(k, v) != v}
        if conflicting:
            raise TypeError(f"{name}: execution-queue tasks always run with {EXECUTION_TASK_OPTIONS}, "
                            f"not {conflicting}")
        options = {**options, **EXECUTION_TASK_OPTIONS}
    options.setdefault("base", SwitchedTask)

    def declare(fn: Callable) -> Any:
        declared = _routes.setdefault(name, queue)
        if declared is not queue:
            raise ValueError(f"task {name!r} is already declared on the {declared.value} queue, "
                             f"not {queue.value}")
        return shared_task(name=name, **options)(fn)

    return declare


def task_queue(name: str) -> Queue | None:
    """The queue task `name` was declared with, or None for a task not declared here."""
    return _routes.get(name)


def task_routes() -> dict[str, Queue]:
    """Every declared task name and its queue (a copy)."""
    return dict(_routes)


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None, **_: Any) -> dict | None:
    """Celery router (task_routes): the declared queue; None leaves the default queue."""
    queue = _routes.get(name)
    return {"queue": queue.value} if queue is not None else None
