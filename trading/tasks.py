"""Celery tasks of the exec-risk service, all on the execution queue: @queue_task gives them acks_late
and reject_on_worker_lost (qtweb/taskqueue.py), so each must be idempotent."""
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task


# Idempotent by design: a re-run after a lost worker finds no new bars (ingest upserts, the
# simulator advances under a row lock) and publishes nothing twice.
@queue_task(Queue.EXECUTION, name="trading.feed.poll", ignore_result=True, soft_time_limit=60, time_limit=90)
def poll_feed() -> int:
    from trading.marketdata.feed import run_once

    return run_once().closed_published


def _retrying(task, exc) -> None:
    """An ExecutionRetry (rate limited, first reconciliation not yet done) retries the task."""
    raise task.retry(exc=exc, countdown=max(0.1, exc.delay_seconds), max_retries=20)


# Intents are idempotent: a lock per intent, deterministic clientOrderIds, orders recorded before
# they are sent. A re-delivery after a lost worker continues where the last run stopped.
@queue_task(Queue.EXECUTION, name="trading.execution.process_intent", bind=True, ignore_result=True,
            soft_time_limit=120, time_limit=150)
def process_intent(self, intent_id: int) -> None:
    from trading.execution.orders import ExecutionRetry
    from trading.execution.services import intent_process

    try:
        intent_process(intent_id)
    except ExecutionRetry as exc:
        _retrying(self, exc)


@queue_task(Queue.EXECUTION, name="trading.execution.advance_intent", bind=True, ignore_result=True,
            soft_time_limit=120, time_limit=150)
def advance_intent(self, intent_id: int) -> None:
    from trading.execution.orders import ExecutionRetry
    from trading.execution.services import intent_advance

    try:
        intent_advance(intent_id)
    except ExecutionRetry as exc:
        _retrying(self, exc)


@queue_task(Queue.EXECUTION, name="trading.execution.sweep", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_intents() -> dict:
    from trading.execution.services import sweep

    return sweep()


@queue_task(Queue.EXECUTION, name="trading.positions.monitor", ignore_result=True, soft_time_limit=60, time_limit=90)
def monitor_positions() -> dict:
    from risk.services.governor import governor_check
    from trading.positions.monitor import monitor_once

    try:
        return monitor_once()
    finally:  # the governor runs even if the monitor failed: a failing exit is when it matters most
        governor_check(trigger="monitor")


@queue_task(Queue.EXECUTION, name="trading.reconcile", ignore_result=True, soft_time_limit=120, time_limit=150)
def reconcile_exchange(reason: str = "periodic") -> bool:
    from trading.execution.reconciliation import reconcile

    return reconcile(reason=reason).ok
