"""Celery task of RL sizing: periodic retraining on the learning queue.

Named analytics.learning.* so qtweb/celery.py's prefix routes send it to the learning queue;
discovered through the one import at the bottom of ai/tasks.py.
"""
from celery import shared_task


@shared_task(name="analytics.learning.retrain_rl_agent", ignore_result=True, soft_time_limit=1800, time_limit=1900)
def retrain_rl_agent_task() -> str:
    from ai.sizing.services import retrain

    return retrain()["path"]
