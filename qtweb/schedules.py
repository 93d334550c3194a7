"""Every periodic job of the system, in one place.

Installed into django-celery-beat by `manage.py setup_periodic_tasks` (run by `make run` and
at deploy). Each entry has an expiry so a backlog of stale runs is dropped, not replayed.

An entry belongs to the service of its queue and is installed disabled while that service is
switched off (README "Service switches"). The platform's own housekeeping (outbox re-dispatch
and pruning) belongs to no service: it runs on the ops queue, or on the queue of another
enabled service while analytics is switched off, so the outbox is still swept and pruned.
"""
from __future__ import annotations

from dataclasses import dataclass

from qtweb.health.status import service_switch_name
from qtweb.queues import Queue, queue_enabled, service_for_queue


@dataclass(frozen=True)
class Schedule:
    task: str
    every_seconds: float
    queue: Queue
    expires_seconds: float  # a run not started within this time is skipped
    description: str
    platform: bool = False  # housekeeping of the platform itself: follows an enabled service


# Where platform housekeeping runs, in order of preference: ops is its home; execution and
# inference are short-task queues that can take two small sweeps while analytics is off.
PLATFORM_QUEUES: tuple[Queue, ...] = (Queue.OPS, Queue.EXECUTION, Queue.INFERENCE)


def placement(schedule: Schedule) -> tuple[Queue, str]:
    """(the queue to install `schedule` on, why it is switched off or "") under the current
    service switches."""
    if schedule.platform:
        for queue in PLATFORM_QUEUES:
            if queue_enabled(queue):
                return queue, ""
        return schedule.queue, "every worker service is switched off"
    if queue_enabled(schedule.queue):
        return schedule.queue, ""
    return schedule.queue, f"{service_switch_name(service_for_queue(schedule.queue))}=false"


SCHEDULES: dict[str, Schedule] = {
    "qt:events.redispatch_pending": Schedule(
        task="qtweb.events.redispatch_pending", every_seconds=30, queue=Queue.OPS, expires_seconds=25,
        description="Re-send outbox deliveries still pending after EVENT_REDISPATCH_AFTER_SECONDS",
        platform=True,
    ),
    "qt:events.prune_processed": Schedule(
        task="qtweb.events.prune_processed", every_seconds=3600, queue=Queue.OPS, expires_seconds=1800,
        description="Expire deliveries a disabled service did not take within its retention; delete fully "
                    "processed events older than EVENT_RETENTION_HOURS",
        platform=True,
    ),
    "qt:analytics.health.evaluate": Schedule(
        task="analytics.health.evaluate", every_seconds=5, queue=Queue.OPS, expires_seconds=5,
        description="Health monitor: the health graph, its transitions and alerts, self-healing, alert rules",
    ),
}


def _setting(name: str) -> float:
    from django.conf import settings

    return getattr(settings, name)


SCHEDULES["qt:ai.universe.scan"] = Schedule(
    task="ai.universe.scan", every_seconds=_setting("UNIVERSE_SCAN_SECONDS"), queue=Queue.INFERENCE,
    expires_seconds=120,
    description="Universe scanner: rank active symbols, store a snapshot, publish universe.opportunity (top N)",
)
def _timeframe_seconds() -> float:
    from trading.marketdata.timeframes import seconds

    return float(seconds(_setting("UNIVERSE_TIMEFRAME")))


SCHEDULES["qt:ai.inference.run"] = Schedule(
    task="ai.inference.run", every_seconds=_timeframe_seconds(), queue=Queue.INFERENCE,
    expires_seconds=_timeframe_seconds() * 0.8,
    description="Inference: the champions vote on every active symbol once per bar of UNIVERSE_TIMEFRAME",
)
SCHEDULES["qt:trading.feed.poll"] = Schedule(
    task="trading.feed.poll", every_seconds=_setting("FEED_POLL_SECONDS"), queue=Queue.EXECUTION,
    expires_seconds=_setting("FEED_POLL_SECONDS"),
    description="Live feed: advance the simulator or poll the exchange; store, cache and publish new bars",
)

SCHEDULES["qt:ai.sizing.retrain_rl_agent"] = Schedule(
    task="ai.sizing.retrain_rl_agent", every_seconds=24 * 3600, queue=Queue.LEARNING, expires_seconds=3600,
    description="RL sizing: retrain the PPO agent on the paper market (new checksummed version serves)",
)

# --- the learning manager (analytics-os service) ---
SCHEDULES["qt:analytics.learning.resolve_outcomes"] = Schedule(
    task="analytics.learning.resolve_outcomes", every_seconds=60, queue=Queue.OPS, expires_seconds=55,
    description="Outcome store: resolve predictions whose horizon closed; feed the ensemble's live weights",
)
SCHEDULES["qt:analytics.learning.check_drift"] = Schedule(
    task="analytics.learning.check_drift", every_seconds=_setting("CLM_DRIFT_CHECK_SECONDS"), queue=Queue.LEARNING,
    expires_seconds=_setting("CLM_DRIFT_CHECK_SECONDS") * 0.9,
    description="Drift score of every champion (feature/prediction PSI, performance decay); retrain above "
                "CLM_DRIFT_THRESHOLD; quarantine collapsed models",
)
SCHEDULES["qt:analytics.learning.reap_jobs"] = Schedule(
    task="analytics.learning.reap_jobs", every_seconds=30, queue=Queue.OPS, expires_seconds=25,
    description="Retraining jobs whose worker went silent: retried, then failed",
)
SCHEDULES["qt:analytics.learning.scheduled_retraining"] = Schedule(
    task="analytics.learning.scheduled_retraining", every_seconds=_setting("CLM_RETRAINING_INTERVAL_HOURS") * 3600,
    queue=Queue.OPS, expires_seconds=3600,
    description="Scheduled retraining: one challenger per model type, judged against its champion",
)

# --- orchestration (analytics-os service): HFOS, the balancer, position intelligence, amplification ---
SCHEDULES["qt:analytics.orchestration.rebalance"] = Schedule(
    task="analytics.orchestration.rebalance", every_seconds=_setting("PBA_REBALANCE_INTERVAL_SECONDS"),
    queue=Queue.OPS, expires_seconds=_setting("PBA_REBALANCE_INTERVAL_SECONDS") * 0.9,
    description="HFOS pass with the portfolio balancer: sector, count and gross caps; position intelligence; "
                "profit amplification; conflicts decided by HFOS_PRIORITY_HIERARCHY",
)
SCHEDULES["qt:analytics.orchestration.assess"] = Schedule(
    task="analytics.orchestration.assess", every_seconds=_setting("PIL_INTERVAL_SECONDS"), queue=Queue.OPS,
    expires_seconds=_setting("PIL_INTERVAL_SECONDS") * 0.9,
    description="HFOS pass between rebalances: classify every open position (PIL), amplify winners (PAL)",
)

# Prefix of the periodic tasks this module owns; others (added by an operator in the admin)
# are left alone by setup_periodic_tasks.
MANAGED_PREFIX = "qt:"

# Tasks that changed name (old -> new). A beat row stored under an old name would send a task no
# worker knows, so setup_periodic_tasks points every such row, managed or not, at the new name.
RENAMED_TASKS: dict[str, str] = {
    "analytics.learning.retrain_rl_agent": "ai.sizing.retrain_rl_agent",
}

# --- execution and risk (exec-risk service) ---
SCHEDULES["qt:trading.execution.sweep"] = Schedule(
    task="trading.execution.sweep", every_seconds=_setting("EXECUTION_SWEEP_SECONDS"), queue=Queue.EXECUTION,
    expires_seconds=_setting("EXECUTION_SWEEP_SECONDS"),
    description="Execution: resume intents whose inline processing was lost; place TWAP/VWAP slices that are due",
)
SCHEDULES["qt:trading.positions.monitor"] = Schedule(
    task="trading.positions.monitor", every_seconds=_setting("POSITION_MONITOR_SECONDS"), queue=Queue.EXECUTION,
    expires_seconds=_setting("POSITION_MONITOR_SECONDS"),
    description="Position monitor: PnL, TP/SL and trailing stops; then the safety governor",
)
SCHEDULES["qt:trading.reconcile"] = Schedule(
    task="trading.reconcile", every_seconds=_setting("RECONCILE_SECONDS"), queue=Queue.EXECUTION,
    expires_seconds=_setting("RECONCILE_SECONDS"),
    description="Reconciliation: database vs exchange (orders, fills, positions, balances); system.alert on mismatch",
)

# --- operator notifications (analytics-os service) ---
SCHEDULES["qt:analytics.notifications.sweep"] = Schedule(
    task="analytics.notifications.sweep", every_seconds=10, queue=Queue.OPS, expires_seconds=9,
    description="Notifications: send deliveries that are due (retries, rate-limited batches, lost tasks); "
                "sync NOTIFY_CHANNELS",
)
