"""Evaluating the alert rules against a health graph (ops queue, with every health graph).

For each enabled rule, its metric is measured per subject (analytics/alerting/metrics.py) and:

- the condition holds and no firing of (rule, subject) is younger than the rule's cooldown: the
  action is performed through the service that owns it and an AlertFiring is recorded with a
  `system.alert` (rule severity; critical when the action failed) in one transaction. While the
  condition keeps holding, the action is repeated once per cooldown (a worker still down after
  its restart is restarted again; self-healing's own cooldown and restart-loop guard still
  apply), each repeat a new firing. A condition that clears and returns within the cooldown
  does not act again: that is what the cooldown is for (flapping).
- the condition no longer holds (measured), or its subject is gone (a worker that stopped, a
  queue whose service was switched off): the open firings of (rule, subject) are resolved.
  Unknown values (metrics.py) neither fire nor resolve.
- a failed action is retried after FAILED_ACTION_RETRY_SECONDS when that is shorter than the
  cooldown: an emergency stop that failed must not wait an hour for its next try.

Actions go through their owners: emergency_stop and reduce_only through the risk service,
trigger_retraining through the learning manager, auto_restart and restart_pool through
self-healing (which records its own HealingAction), notify is the `system.alert` itself. The
other actions are also recorded as a HealingAction of kind "rule" (the table of everything the
analytics service decided). With ANALYTICS_OS_SERVICE_SHADOW the rules decide and record
("shadow: would have ..."), and act on nothing.

A rule that cannot be evaluated (a stored row the catalogue refuses, say after an upgrade dropped
a metric) gets one failed firing on the subject "(rule)", open until the rule is fixed; a
metric that cannot be measured is logged; one bad rule never stops the others, and
evaluate_rules never raises.

Two ops processes never act twice on one rule: the health pass that calls this runs one at a
time (a Redis lock, analytics/health/monitor.py). No transaction wraps a rule, so each action
commits on its own and nothing that fails after it rolls it back.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from analytics.alerting import catalog, metrics
from analytics.models import AlertFiring, AlertRule, HealingAction, HealingKind, HealingOutcome
from core.decimals import to_decimal
from core.enums import Severity
from core.limits import NAME_MAX, TEXT_MAX, clip
from qtweb import tracing
from qtweb.events import EventType, publish
from qtweb.logging import get_logger
from qtweb.queues import Service

log = get_logger(__name__)

COMPONENT = "alert_rules"
# The subject of the firing that reports a rule which cannot be evaluated.
INVALID_RULE_SUBJECT = "(rule)"
# A failed action is tried again after this long even when the rule's cooldown is longer:
# long enough not to hammer a failing dependency every 5 s, short enough for a safety action.
FAILED_ACTION_RETRY_SECONDS = 60

_VERBS = {
    "notify": "notified",
    "auto_restart": "restarted the worker",
    "restart_pool": "restarted the worker's pool",
    "emergency_stop": "stopped trading (emergency stop: HALTED, open orders cancelled)",
    "reduce_only": "set REDUCE_ONLY",
    "trigger_retraining": "queued a retraining",
}


@dataclass
class _Firing:
    """One (rule, subject) whose condition holds, on its way to an action."""

    rule: AlertRule
    subject: str
    value: float
    graph: dict
    now: datetime
    trace_id: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return f"alert rule {self.rule.name}"

    @property
    def condition(self) -> str:
        return _condition(self.rule, self.subject, self.value)


def _condition(rule: AlertRule, subject: str, value: float) -> str:
    m = catalog.METRICS[rule.metric]
    return (f"{rule.metric} {value:g}{m.unit and ' ' + m.unit} {catalog.COMPARISON_SYMBOLS[rule.comparison]} "
            f"{rule.threshold:g} on {subject}")


# --- the actions, each through its owner: (outcome, what happened) ------------------------------

Result = tuple[str, str]


def _notify(f: _Firing) -> Result:
    return HealingOutcome.DONE, "system.alert published"


def _restart(f: _Firing) -> Result:
    from analytics.healing import service as healing

    if catalog.METRICS[f.rule.metric].subject == catalog.QUEUE:
        queue = f.subject
    else:  # a worker: restart its queue's worker program (the process manager knows programs)
        queue = (((f.graph.get("workers") or {}).get(f.subject) or {}).get("queue"))
        if not queue:
            return HealingOutcome.FAILED, f"worker {f.subject} is not in the health graph: no queue to restart"
    action = healing.restart_queue_worker(queue, trigger=f"{f.actor}: {f.condition}", details=f.details, rule=f.rule)
    if action is None:
        gave_up = healing.given_up(queue)
        if gave_up is not None:
            return HealingOutcome.SKIPPED, f"self-healing gave up restarting the {queue} worker: {gave_up.result}"
        return HealingOutcome.SKIPPED, (f"the {queue} worker is not restarted now: self-healing restarted or "
                                        "tried it within its cooldown, or it is still starting")
    return action.outcome, f"{action.kind} {action.target}: {action.result or action.outcome}"


def _restart_pool(f: _Firing) -> Result:
    from analytics.healing import service as healing

    action = healing.restart_pool(f.subject, trigger=f"{f.actor}: {f.condition}", details=f.details, rule=f.rule)
    if action is None:
        return HealingOutcome.SKIPPED, f"the pool of {f.subject} was restarted within self-healing's cooldown"
    return action.outcome, f"{action.kind} {action.target}: {action.result or action.outcome}"


def _emergency_stop(f: _Firing) -> Result:
    from risk import selectors as risk_sel
    from risk.services.governor import emergency_stop

    resumed = risk_sel.last_operator_resume(from_halted_only=True)
    if resumed is not None and resumed.astimezone(UTC).date() == f.now.astimezone(UTC).date():
        # As the safety governor: an operator who resumed from today's emergency stop owns that
        # decision; a rule does not overrule it the same UTC day.
        return HealingOutcome.SKIPPED, (f"not stopped again: an operator resumed from today's emergency stop at "
                                        f"{resumed:%H:%M} UTC")
    drawdown = to_decimal(f.value, "drawdown_pct") if f.rule.metric == "drawdown_pct" else None
    halted = emergency_stop(reason=f"{f.actor}: {f.condition}", triggered_by=f.actor, by_operator=False,
                            drawdown_pct=drawdown)
    if halted:
        return HealingOutcome.DONE, "HALTED through the risk service; emergency.stop published (open orders cancelled)"
    return HealingOutcome.DONE, "already HALTED; emergency.stop published again (cancel and flatten run again)"


def _reduce_only(f: _Firing) -> Result:
    from risk.domain.modes import Mode, ModeTransitionError
    from risk.services.modes import mode_set

    try:
        mode_set(target=Mode.REDUCE_ONLY, reason=f"{f.actor}: {f.condition}", changed_by=f.actor, by_operator=False)
    except ModeTransitionError as exc:  # already REDUCE_ONLY, or HALTED (more restrictive)
        return HealingOutcome.SKIPPED, f"mode unchanged: {exc}"
    return HealingOutcome.DONE, "REDUCE_ONLY through the risk service"


def _trigger_retraining(f: _Firing) -> Result:
    from analytics.learning import jobs
    from analytics.models import JobTrigger

    try:
        job = jobs.request_retraining(model_type=f.subject, trigger=JobTrigger.DRIFT,
                                      reason=f"{f.actor}: {f.condition}", requested_by=f.actor)
    except jobs.JobAlreadyActive as exc:
        return HealingOutcome.SKIPPED, str(exc)
    except jobs.RetrainingRefused as exc:
        return HealingOutcome.FAILED, str(exc)
    return HealingOutcome.DONE, f"retraining job {job.pk} queued for {f.subject}"


_ACTIONS: dict[str, Callable[[_Firing], Result]] = {
    "notify": _notify,
    "auto_restart": _restart,
    "restart_pool": _restart_pool,
    "emergency_stop": _emergency_stop,
    "reduce_only": _reduce_only,
    "trigger_retraining": _trigger_retraining,
}
# Self-healing records these itself (with the rule), shadow included.
_DELEGATED_TO_HEALING = frozenset({"auto_restart", "restart_pool"})


def _shadow() -> bool:
    from analytics.healing import service as healing

    return healing.analytics_shadow()


def _act(f: _Firing) -> tuple[str, str, bool]:
    """Perform the rule's action: (outcome, what happened, shadow). Never raises: a failure is
    the outcome."""
    action = f.rule.action
    shadow = _shadow()
    try:
        if shadow and action not in _DELEGATED_TO_HEALING:
            outcome, result = HealingOutcome.SKIPPED, f"shadow: would have {_VERBS[action]}"
        else:
            with transaction.atomic():  # a failure rolls back this action's writes only
                outcome, result = _ACTIONS[action](f)
    except Exception as exc:
        log.exception("alert rule action failed", rule=f.rule.name, action=action, subject=f.subject)
        outcome, result = HealingOutcome.FAILED, f"{action} failed: {type(exc).__name__}: {exc}"
    return outcome, result, shadow


# --- recording -----------------------------------------------------------------------------------


def _alert(severity: str, message: str, service: str | None, trace_id: str) -> None:
    publish(EventType.SYSTEM_ALERT, {"severity": severity, "component": COMPONENT, "service": service,
                                     "message": clip(message, TEXT_MAX)},
            source=Service.ANALYTICS.value, trace_id=trace_id)


def _fire(f: _Firing) -> AlertFiring | None:
    rule = f.rule
    outcome, result, shadow = _act(f)
    log.warning("alert rule fired", rule=rule.name, subject=f.subject, value=f.value, threshold=rule.threshold,
                action=rule.action, outcome=outcome, result=result)
    severity = Severity.CRITICAL.value if outcome == HealingOutcome.FAILED else rule.severity
    label = {HealingOutcome.DONE: "", HealingOutcome.FAILED: "FAILED ", HealingOutcome.SKIPPED: "skipped "}[outcome]
    try:
        # The record is a savepoint of its own: a bookkeeping failure must not roll back the
        # action (an emergency stop) that went before it.
        with transaction.atomic():
            firing = AlertFiring.objects.create(
                rule=rule, subject=clip(f.subject, NAME_MAX), value=f.value, threshold=rule.threshold,
                fired_at=f.now, action_outcome=outcome, action_result=clip(result), trace_id=f.trace_id)
            if rule.action not in _DELEGATED_TO_HEALING and rule.action != "notify":
                HealingAction.objects.create(
                    kind=HealingKind.RULE, target=clip(f.subject, NAME_MAX), trigger=clip(f"{f.actor}: {f.condition}"),
                    details={**f.details, "action": rule.action}, outcome=outcome, result=clip(result), rule=rule,
                    shadow=shadow, created_at=f.now, trace_id=f.trace_id)
            _alert(severity, f"alert rule {rule.name}: {f.condition} -> {label}{rule.action}: {result}",
                   metrics.subject_service(rule.metric, f.subject, f.graph), f.trace_id)
    except Exception:
        log.exception("alert rule firing not recorded", rule=rule.name, subject=f.subject)
        return None
    return firing


def _resolve(rule: AlertRule, subject: str, why: str, graph: dict, now: datetime) -> None:
    n = AlertFiring.objects.filter(rule=rule, subject=subject, resolved_at__isnull=True).update(resolved_at=now)
    if not n:
        return
    service = metrics.subject_service(rule.metric, subject, graph) if rule.metric in catalog.METRICS else None
    _alert(Severity.INFO.value, f"alert rule {rule.name} resolved on {subject}: {why}", service,
           tracing.current_trace_id() or tracing.new_trace_id())
    log.info("alert rule resolved", rule=rule.name, subject=subject, why=why)


def _cleared(rule: AlertRule, subject: str, value: float) -> str:
    m = catalog.METRICS[rule.metric]
    return (f"{rule.metric} {value:g}{m.unit and ' ' + m.unit}, no longer "
            f"{catalog.COMPARISON_SYMBOLS[rule.comparison]} {rule.threshold:g}")


def _invalid(rule: AlertRule, error: catalog.RuleError, now: datetime) -> list[AlertFiring]:
    """One open failed firing while a stored rule cannot be evaluated (not one every pass)."""
    if AlertFiring.objects.filter(rule=rule, subject=INVALID_RULE_SUBJECT, resolved_at__isnull=True).exists():
        return []
    threshold = rule.threshold if isinstance(rule.threshold, int | float) and math.isfinite(rule.threshold) else 0.0
    trace_id = tracing.new_trace_id()
    result = f"the rule cannot be evaluated: {error}; fix it in the admin or the API"
    firing = AlertFiring.objects.create(rule=rule, subject=INVALID_RULE_SUBJECT, value=0.0, threshold=threshold,
                                        fired_at=now, action_outcome=HealingOutcome.FAILED, action_result=clip(result),
                                        trace_id=trace_id)
    _alert(Severity.CRITICAL.value, f"alert rule {rule.name}: {result}", None, trace_id)
    log.error("alert rule invalid", rule=rule.name, field=error.field, error=error.message)
    return [firing]


# --- evaluation ----------------------------------------------------------------------------------


def _measured(metric: str, graph: dict, now: datetime, memo: dict) -> dict[str, float] | None:
    """The metric's values, measured once per pass (None when measuring failed: logged)."""
    if metric not in memo:
        try:
            memo[metric] = metrics.measure(metric, graph, now=now)
        except Exception as exc:
            log.warning("alert metric could not be measured", metric=metric, error=f"{type(exc).__name__}: {exc}")
            memo[metric] = None
    return memo[metric]


def _evaluate_rule(rule_id: int, graph: dict, now: datetime, memo: dict) -> list[AlertFiring]:
    # One health pass runs at a time (the lock in analytics/health/monitor.py), so the rule needs no
    # row lock; and with no transaction around the rule, each action (an emergency stop, the
    # record of a restart) commits on its own: nothing that fails after it can roll it back.
    rule = AlertRule.objects.filter(pk=rule_id, enabled=True).first()
    if rule is None:  # just disabled or deleted
        return []
    try:
        catalog.validate_rule(metric=rule.metric, comparison=rule.comparison, threshold=rule.threshold,
                              action=rule.action, severity=rule.severity)
    except catalog.RuleError as exc:
        return _invalid(rule, exc, now)
    _resolve(rule, INVALID_RULE_SUBJECT, "the rule is valid again", graph, now)
    values = _measured(rule.metric, graph, now, memo)
    if values is None:
        return []
    holding = {s: v for s, v in values.items() if catalog.holds(rule.comparison, v, rule.threshold)}
    cooldown = timedelta(seconds=rule.cooldown_seconds)
    retry = timedelta(seconds=min(rule.cooldown_seconds, FAILED_ACTION_RETRY_SECONDS))
    latest: dict[str, AlertFiring] = {}
    for f in (AlertFiring.objects.filter(rule=rule, subject__in=list(holding), fired_at__gt=now - cooldown)
              .order_by("subject", "-fired_at", "-pk")):
        latest.setdefault(f.subject, f)
    fired = []
    for subject, value in sorted(holding.items()):
        last = latest.get(subject)
        if last is not None and not (last.action_outcome == HealingOutcome.FAILED and last.fired_at <= now - retry):
            continue  # within the cooldown of its last action
        trace_id = tracing.new_trace_id()
        with tracing.trace(trace_id):
            f = _Firing(rule=rule, subject=subject, value=value, graph=graph, now=now, trace_id=trace_id,
                        details={"rule": rule.name, "metric": rule.metric, "value": value,
                                 "threshold": rule.threshold, "service":
                                     metrics.subject_service(rule.metric, subject, graph)})
            firing = _fire(f)
        if firing is not None:
            fired.append(firing)
    present = metrics.present_subjects(rule.metric, graph)
    open_subjects = set(AlertFiring.objects.filter(rule=rule, resolved_at__isnull=True)
                        .exclude(subject=INVALID_RULE_SUBJECT).values_list("subject", flat=True))
    for subject in sorted(open_subjects - set(holding)):
        if subject in values:
            _resolve(rule, subject, _cleared(rule, subject, values[subject]), graph, now)
        elif present is not None and subject not in present:
            _resolve(rule, subject, f"{subject} is gone (stopped, or its service switched off)", graph, now)
    return fired


def evaluate_rules(graph: dict, *, now: datetime | None = None) -> list[AlertFiring]:
    """Evaluate every enabled rule against `graph` (a health graph, analytics/health/graph.py)
    and the account and drift state; act and record. Returns the firings recorded in this pass.
    Never raises: a rule that fails is logged (and recorded when it got as far as its action)."""
    now = now or timezone.now()
    memo: dict[str, dict[str, float] | None] = {}
    fired: list[AlertFiring] = []
    try:
        rule_ids = list(AlertRule.objects.filter(enabled=True).order_by("name").values_list("pk", flat=True))
    except Exception as exc:
        log.error("alert rules could not be read", error=f"{type(exc).__name__}: {exc}")
        return fired
    for rule_id in rule_ids:
        try:
            fired.extend(_evaluate_rule(rule_id, graph, now, memo))
        except Exception:
            log.exception("alert rule evaluation failed", rule_id=rule_id)
    return fired
