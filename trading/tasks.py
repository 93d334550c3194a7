"""Celery tasks of the exec-risk service (routed to the execution queue by the trading. prefix)."""
from celery import shared_task

from qtweb.celery import EXECUTION_TASK_OPTIONS


# Idempotent by design: a re-run after a lost worker finds no new bars (ingest upserts, the
# simulator advances under a row lock) and publishes nothing twice.
@shared_task(name="trading.feed.poll", ignore_result=True, soft_time_limit=60, time_limit=90, **EXECUTION_TASK_OPTIONS)
def poll_feed() -> int:
    from trading.marketdata.feed import run_once

    return run_once().closed_published
