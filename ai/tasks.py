"""Celery tasks of the ai service (inference queue; RL retraining, on the learning queue, is in ai/sizing/tasks.py)."""
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task


@queue_task(Queue.INFERENCE, name="ai.universe.scan", ignore_result=True, soft_time_limit=120, time_limit=150)
def scan_universe_task() -> int:
    from ai.universe.services import scan_universe

    return scan_universe().pk


@queue_task(Queue.INFERENCE, name="ai.inference.run", ignore_result=True, soft_time_limit=60, time_limit=90)
def run_inference_task() -> int:
    from ai.inference import run_inference

    return len(run_inference().signals)
from ai.sizing import tasks as _sizing_tasks  # noqa: E402,F401  (discovers ai.sizing.retrain_rl_agent)


@queue_task(Queue.INFERENCE, name="ai.outcomes.score", ignore_result=True, soft_time_limit=60, time_limit=90)
def score_predictions_task() -> int:
    from ai.outcomes import score_predictions

    return score_predictions()
