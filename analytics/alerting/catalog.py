"""What an alert rule may say (pure): the metrics it can watch, the comparisons, the actions.

A rule is data (analytics.models.AlertRule), edited by operators in the admin and the API; this
catalogue is the code that gives its words meaning. A rule naming anything not listed here is
refused with the field named, so a typo never becomes a rule that silently never fires.

Each metric is measured per subject: a worker's heartbeat per queue, a worker's memory, the
account's drawdown, each champion model's drift score. An action names the kind of subject it
acts on, and a rule whose action cannot act on its metric's subject is refused too (restarting
"the account" means nothing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.enums import Severity

# Subject kinds.
QUEUE = "queue"  # a queue and the workers that consume it
WORKER = "worker"  # one worker process (a Celery node)
ACCOUNT = "account"  # the trading account
MODEL = "model"  # a champion model (by type)
SYSTEM = "system"  # the system as a whole (a dependency)


@dataclass(frozen=True)
class Metric:
    name: str
    subject: str
    unit: str
    description: str
    lower: float = 0.0  # the smallest meaningful threshold
    upper: float = math.inf  # the largest


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("heartbeat_missing_seconds", QUEUE, "s",
           "seconds since the freshest heartbeat of a live worker on the queue", 1.0, 86_400.0),
    Metric("queue_oldest_message_seconds", QUEUE, "s",
           "age of the oldest message waiting on the queue", 1.0, 86_400.0),
    Metric("queue_depth", QUEUE, "messages", "messages waiting on the queue", 0.0, 10_000_000.0),
    Metric("memory_percent", WORKER, "%", "memory of a worker's process tree, % of the machine", 0.1, 100.0),
    Metric("drawdown_pct", ACCOUNT, "%", "the account's drawdown from its equity at the start of the UTC day, %",
           0.1, 100.0),
    Metric("drift_score", MODEL, "PSI", "a champion's latest drift score (analytics/learning)", 1e-6, 100.0),
    Metric("database_latency_ms", SYSTEM, "ms", "a SELECT 1 round trip", 0.1, 600_000.0),
    Metric("redis_latency_ms", SYSTEM, "ms", "a PING round trip", 0.1, 600_000.0),
)}


@dataclass(frozen=True)
class Action:
    name: str
    subjects: tuple[str, ...]  # the subject kinds it can act on
    owner: str  # the service that performs it
    description: str


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("notify", (QUEUE, WORKER, ACCOUNT, MODEL, SYSTEM), "analytics-os-service",
           "a system.alert to the dashboard, the log and the notification channels"),
    Action("auto_restart", (QUEUE, WORKER), "analytics-os-service",
           "self-healing restarts the worker through the process manager (with cooldown and loop guard)"),
    Action("restart_pool", (WORKER,), "analytics-os-service", "restart the worker's pool processes"),
    Action("emergency_stop", (ACCOUNT, SYSTEM, QUEUE, WORKER, MODEL), "exec-risk-service",
           "the risk service's emergency stop: HALTED, open orders cancelled"),
    Action("reduce_only", (ACCOUNT, SYSTEM, QUEUE, WORKER, MODEL), "exec-risk-service",
           "the risk service's REDUCE_ONLY mode"),
    Action("trigger_retraining", (MODEL,), "analytics-os-service",
           "the learning manager queues a retraining job for the model's type"),
)}

COMPARISONS = {
    "gt": lambda v, t: v > t,
    "ge": lambda v, t: v >= t,
    "lt": lambda v, t: v < t,
    "le": lambda v, t: v <= t,
}
COMPARISON_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
SEVERITIES = tuple(s.value for s in Severity)

# The design's four rules, installed by the migration that creates them and restored by
# `manage.py setup_alert_rules --reset`.
DEFAULT_RULES: tuple[dict, ...] = (
    {"name": "ServiceDown", "metric": "heartbeat_missing_seconds", "comparison": "gt", "threshold": 15.0,
     "action": "auto_restart", "severity": "critical", "cooldown_seconds": 60,
     "description": "A queue's workers stopped beating: restart the worker."},
    {"name": "HighMemory", "metric": "memory_percent", "comparison": "gt", "threshold": 85.0,
     "action": "notify", "severity": "warning", "cooldown_seconds": 600,
     "description": "A worker uses more than 85 % of the machine's memory (self-healing restarts its pool)."},
    {"name": "DrawdownLimit", "metric": "drawdown_pct", "comparison": "gt", "threshold": 10.0,
     "action": "emergency_stop", "severity": "critical", "cooldown_seconds": 3600,
     "description": "The account lost more than 10 % since the start of the UTC day: emergency stop through risk."},
    {"name": "ModelDrift", "metric": "drift_score", "comparison": "gt", "threshold": 0.15,
     "action": "trigger_retraining", "severity": "warning", "cooldown_seconds": 3600,
     "description": "A champion's drift score is above 0.15: the learning manager retrains it."},
)


class RuleError(ValueError):
    """A rule that cannot be kept; `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_rule(*, metric: str, comparison: str, threshold, action: str, severity: str = "warning") -> None:
    """Raise RuleError naming the first field that is wrong."""
    m = METRICS.get(metric)
    if m is None:
        raise RuleError("metric", f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}")
    if comparison not in COMPARISONS:
        raise RuleError("comparison", f"unknown comparison {comparison!r}; use one of {', '.join(COMPARISONS)}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RuleError("threshold", f"threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise RuleError("threshold", f"threshold must be finite, got {threshold!r}")
    if not m.lower <= threshold <= m.upper:
        raise RuleError("threshold", f"{metric} is in {m.unit}: the threshold must be between {m.lower:g} and "
                                     f"{m.upper:g}, got {threshold:g}")
    a = ACTIONS.get(action)
    if a is None:
        raise RuleError("action", f"unknown action {action!r}; known actions: {', '.join(sorted(ACTIONS))}")
    if m.subject not in a.subjects:
        raise RuleError("action", f"{action} cannot act on {metric}, which is measured per {m.subject}; "
                                  f"{action} acts on: {', '.join(a.subjects)}")
    if severity not in SEVERITIES:
        raise RuleError("severity", f"unknown severity {severity!r}; use one of {', '.join(SEVERITIES)}")


def holds(comparison: str, value: float, threshold: float) -> bool:
    return COMPARISONS[comparison](value, threshold)
