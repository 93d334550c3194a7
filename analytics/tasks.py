"""Celery tasks of the analytics-os service (thin: the logic lives in the modules they call)."""
from celery import shared_task


@shared_task(name="analytics.health.evaluate", ignore_result=True,  # ops (route analytics.*)
             soft_time_limit=10, time_limit=20)
def evaluate_health() -> None:
    from analytics.health.monitor import evaluate

    evaluate()
