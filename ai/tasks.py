"""Celery tasks of the ai service (routed to the inference queue by the ai.* prefix)."""
from celery import shared_task


@shared_task(name="ai.universe.scan", ignore_result=True, soft_time_limit=120, time_limit=150)
def scan_universe_task() -> int:
    from ai.universe.services import scan_universe

    return scan_universe().pk


@shared_task(name="ai.inference.run", ignore_result=True, soft_time_limit=60, time_limit=90)
def run_inference_task() -> int:
    from ai.inference import run_inference

    return len(run_inference().signals)
from ai.sizing import tasks as _sizing_tasks  # noqa: E402,F401  (discovers analytics.learning.retrain_rl_agent)


@shared_task(name="ai.outcomes.score", ignore_result=True, soft_time_limit=60, time_limit=90)
def score_predictions_task() -> int:
    from ai.outcomes import score_predictions

    return score_predictions()
