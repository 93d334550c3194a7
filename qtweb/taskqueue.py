"""Celery tasks declared with their queue: `@queue_task(Queue.EXECUTION, name="trading.reconcile")`.

The decorator records the route (full task name -> queue) here, and qtweb/celery.py routes every
message from this table, so a task's queue is written where the task is and its name only has
to say which app owns it. An explicit apply_async(queue=...) still wins: the event bus and RPC
send that way to a subscriber's or a service's queue.

The queue is kept out of the Celery task itself (no queue= on shared_task): Celery 5.7
deprecates routing attributes on the task decorator and 6.0 ignores them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

from qtweb.queues import Queue

# A message is acknowledged only once its task finished, so a worker that dies mid-order leaves
# it on the queue; every execution task must therefore be idempotent (client order ids,
# processed markers). Prefetch 1 is set on the execution worker's command line
# (deploy/supervisord.conf, docker-compose.yml) so one slow order never holds others.
EXECUTION_TASK_OPTIONS: dict[str, bool] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
}

_routes: dict[str, Queue] = {}


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
