"""Celery task of RL sizing: periodic retraining on the learning queue.

Discovered through the one import in ai/tasks.py (Celery's autodiscovery reads <app>.tasks only).
"""
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task


@queue_task(Queue.LEARNING, name="ai.sizing.retrain_rl_agent", ignore_result=True, soft_time_limit=1800,
            time_limit=1900)
def retrain_rl_agent_task() -> str:
    from ai.sizing.services import retrain

    return retrain()["path"]
