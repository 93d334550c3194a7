"""Celery tasks of the analytics-os service (thin: the logic lives in the modules they call)."""
from celery import shared_task

from qtweb.queues import Queue


@shared_task(name="analytics.health.evaluate", queue=Queue.OPS.value, ignore_result=True,
             soft_time_limit=10, time_limit=20)
def evaluate_health() -> None:
    from analytics.health.monitor import evaluate

    evaluate()
