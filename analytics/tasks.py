"""Celery tasks of the analytics-os service (thin: the logic lives in the modules they call)."""
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task


# A pass may wait on supervisord while it restarts a worker (up to ~10 s): the limit leaves room.
@queue_task(Queue.OPS, name="analytics.health.evaluate", ignore_result=True,
            soft_time_limit=45, time_limit=60)
def evaluate_health() -> None:
    from analytics.health.monitor import evaluate_exclusively

    evaluate_exclusively()


# Bookkeeping on the ops queue: the learning worker may be busy with a retraining job for minutes.
@queue_task(Queue.OPS, name="analytics.learning.resolve_outcomes", ignore_result=True,
            soft_time_limit=120, time_limit=150)
def resolve_outcomes_task() -> int:
    from analytics.learning.outcomes import resolve_due

    return resolve_due()["resolved"]


@queue_task(Queue.LEARNING, name="analytics.learning.check_drift", ignore_result=True,
            soft_time_limit=120, time_limit=150)
def check_drift_task() -> int:
    from analytics.learning.monitor import check_drift, supervise_quarantine

    checks = check_drift()
    supervise_quarantine()
    return sum(c.detected for c in checks)


# A retraining job may train a neural model on two weeks of the universe: its limit is generous,
# and a job that still dies is failed by the reaper with its reason.
@queue_task(Queue.LEARNING, name="analytics.learning.retrain", ignore_result=True,
            soft_time_limit=3300, time_limit=3600)
def retrain_task(job_id: int) -> str:
    from analytics.learning.jobs import run_job

    job = run_job(job_id)
    return job.status if job else "not claimed"


# On the ops queue: the learning worker may be the one that died.
@queue_task(Queue.OPS, name="analytics.learning.reap_jobs", ignore_result=True, soft_time_limit=20, time_limit=30)
def reap_jobs_task() -> dict:
    from analytics.learning.jobs import reap_stale

    return reap_stale()


# It only queues jobs: on the ops queue, so a busy learning worker never makes it miss its day.
@queue_task(Queue.OPS, name="analytics.learning.scheduled_retraining", ignore_result=True,
            soft_time_limit=30, time_limit=60)
def scheduled_retraining_task() -> list[int]:
    from analytics.learning.jobs import request_scheduled

    return [j.pk for j in request_scheduled()]


# --- operator notifications ---
# One task per channel: a channel that fails or hangs (bounded by SEND_TIMEOUT_SECONDS) holds
# back no other channel. Retries and rate-limit waits are rows with a next_attempt_at, so the
# task needs no retry of its own: flush_channel schedules the next run, and the sweep is the net.
@queue_task(Queue.OPS, name="analytics.notifications.send", ignore_result=True, soft_time_limit=30, time_limit=40)
def send_notifications_task(channel_id: int) -> str:
    from analytics.notifications.dispatch import flush_channel

    return flush_channel(channel_id).outcome


@queue_task(Queue.OPS, name="analytics.notifications.sweep", ignore_result=True, soft_time_limit=20, time_limit=30)
def sweep_notifications_task() -> int:
    from analytics.notifications.dispatch import sweep

    return sweep()


# --- orchestration: HFOS with the portfolio balancer, position intelligence and profit amplification ---
# It may wait up to 30 s for another pass to finish; the soft limit ends it before its lock (120 s) expires.
@queue_task(Queue.OPS, name="analytics.orchestration.rebalance", ignore_result=True, soft_time_limit=90,
            time_limit=110)
def rebalance_task(trigger: str = "beat") -> int | None:
    """A full pass: the balancer's caps, position intelligence and amplification, decided by HFOS."""
    from analytics.orchestration.service import run_exclusively

    decision = run_exclusively(trigger, include_pba=True, wait_seconds=30)
    return decision.pk if decision else None


@queue_task(Queue.OPS, name="analytics.orchestration.assess", ignore_result=True, soft_time_limit=60, time_limit=90)
def assess_positions_task() -> int | None:
    """Position intelligence and amplification between the balancer's passes (the caps wait for theirs)."""
    from analytics.orchestration.service import run_exclusively

    decision = run_exclusively("monitor", include_pba=False)
    return decision.pk if decision else None
