"""Celery tasks of the ai service: inference and the universe scan on the inference queue; RL
sizing's retraining on the learning queue."""
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


@queue_task(Queue.LEARNING, name="ai.sizing.retrain_rl_agent", ignore_result=True, soft_time_limit=1800,
            time_limit=1900)
def retrain_rl_agent_task() -> str:
    from ai.sizing.services import retrain

    return retrain()["path"]
