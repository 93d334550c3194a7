"""Celery tasks of the analytics-os service (thin: the logic lives in the modules they call)."""
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task


@queue_task(Queue.OPS, name="analytics.health.evaluate", ignore_result=True,
            soft_time_limit=10, time_limit=20)
def evaluate_health() -> None:
    from analytics.health.monitor import evaluate

    evaluate()
