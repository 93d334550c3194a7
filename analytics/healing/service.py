"""Self-healing: acts on the health graph through the owning services, and records every action.

Each pass (analytics/health/monitor.py, ops queue, every few seconds):
1. notices workers the process manager restarted on its own (a pid changed): that is a death,
   alerted and counted like a restart of ours;
2. asks the pure policy (analytics/healing/policy.py) what the graph calls for;
3. performs each decision unless a cooldown, the restart-loop guard or SHADOW says otherwise.

Every action is a HealingAction row and a `system.alert` in one transaction, so the dashboard,
the log and the notification channels see it. A restart goes through the process manager
(analytics/healing/process.py); a quarantine through the model registry; REDUCE_ONLY through the
risk service's mode API, never around it.
"""
from __future__ import annotations

from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.healing import policy
from analytics.healing.process import ProcessManagerError, manager, program_for_queue, queue_for_program
from analytics.models import HealingAction, HealingKind, HealingOutcome
from core.enums import Mode, Severity
from qtweb.events import EventType, publish
from qtweb.logging import get_logger
from qtweb.queues import Service, service_shadow
from qtweb.tracing import current_trace_id

log = get_logger(__name__)

ACTOR = "self-healing"
QUARANTINE_PREFIX = "self-healing: "
# A pid change seen this soon after our own restart of that worker is our restart, not a death.
_OWN_RESTART_GRACE_SECONDS = 30
# A worker process this young is still importing its models before its first heartbeat: killing it
# again would be a restart loop of our own making.
STARTUP_GRACE_SECONDS = 120


def analytics_shadow() -> bool:
    return service_shadow(Service.ANALYTICS)


def record(kind: str, target: str, *, trigger: str, details: dict | None = None, outcome: str, result: str = "",
           rule=None, severity: Severity | str | None = None) -> HealingAction:
    """The row and its `system.alert`, in one transaction."""
    shadow = analytics_shadow()
    if severity is None:
        severity = Severity.WARNING if outcome != HealingOutcome.FAILED else Severity.CRITICAL
    with transaction.atomic():
        row = HealingAction.objects.create(
            kind=kind, target=target[:128], trigger=trigger[:500], details=details or {}, outcome=outcome,
            result=result[:500], rule=rule, shadow=shadow, created_at=timezone.now(), trace_id=current_trace_id() or "")
        verb = {"done": "", "failed": "FAILED ", "skipped": "skipped "}[outcome]
        publish(EventType.SYSTEM_ALERT, {
            "severity": Severity(severity).value, "component": "self_healing",
            "service": (details or {}).get("service"),
            "message": f"{verb}{kind} {target}{' (shadow)' if shadow else ''}: {trigger}"
                       f"{' -> ' + result if result else ''}"[:2000],
        }, source=Service.ANALYTICS.value)
    log.warning("self-healing action", kind=kind, target=target, outcome=outcome, trigger=trigger, result=result,
                shadow=shadow)
    return row


def _recent(kind: str, target: str, seconds: float, *, outcome: str | None = HealingOutcome.DONE):
    qs = HealingAction.objects.filter(kind=kind, target=target,
                                      created_at__gte=timezone.now() - timedelta(seconds=seconds))
    return qs.filter(outcome=outcome) if outcome else qs


def _last(kind: str, target: str):
    return HealingAction.objects.filter(kind=kind, target=target).order_by("-created_at", "-pk").first()


def given_up(queue: str) -> HealingAction | None:
    """The give-up in force for a queue's worker (none once an operator resumed it)."""
    gave_up, resumed = _last(HealingKind.GIVE_UP, queue), _last(HealingKind.RESUME, queue)
    if gave_up is None or (resumed is not None and resumed.created_at >= gave_up.created_at):
        return None
    return gave_up


def restarts_in_window(queue: str) -> int:
    since = timezone.now() - timedelta(seconds=settings.SELF_HEALING_RESTART_WINDOW_SECONDS)
    resumed = _last(HealingKind.RESUME, queue)
    if resumed is not None and resumed.created_at > since:
        since = resumed.created_at
    return HealingAction.objects.filter(kind=HealingKind.RESTART_WORKER, target=queue, outcome=HealingOutcome.DONE,
                                        shadow=False, created_at__gte=since).count()


# The ops worker runs this very pass: killing it kills the pass (its pool dies with it). It is
# restarted like the others, but its row is committed first, and it is never given up on: without
# it nothing would watch or heal anything.
SELF_QUEUE = "ops"


def restart_queue_worker(queue: str, *, trigger: str, details: dict | None = None, rule=None) -> HealingAction | None:
    """Restart the worker of `queue` through the process manager. None (nothing done or recorded)
    within the cooldown of the last attempt (done or failed), while the program is still starting,
    or once self-healing gave up on it; past the loop guard it is stopped for good and an operator
    alert raised instead."""
    details = {**(details or {}), "queue": queue, "program": program_for_queue(queue), "observed": False}
    if given_up(queue) is not None:
        return None
    cooldown = settings.SELF_HEALING_RESTART_COOLDOWN_SECONDS
    if _recent(HealingKind.RESTART_WORKER, queue, cooldown, outcome=None).exists():
        return None
    if analytics_shadow():
        return record(HealingKind.RESTART_WORKER, queue, trigger=trigger, details=details, rule=rule,
                      outcome=HealingOutcome.SKIPPED, result="shadow: would have restarted " + details["program"])
    pm = manager()
    starting = _still_starting(pm, details["program"])
    if starting:
        log.info("worker still starting: not restarted", queue=queue, process=starting)
        return None
    done = restarts_in_window(queue)
    if done >= settings.SELF_HEALING_MAX_RESTARTS and queue != SELF_QUEUE:
        return give_up(queue, trigger=trigger, details={**details, "restarts_in_window": done}, rule=rule)
    details["restarts_in_window"] = done + 1
    if pm.name == "none":  # docker: its healthcheck and restart policy act; nothing failed here
        return record(HealingKind.RESTART_WORKER, queue, trigger=trigger, rule=rule, details=details,
                      outcome=HealingOutcome.SKIPPED,
                      result=f"PROCESS_MANAGER=none: {details['program']} is left to the container's healthcheck "
                             f"and restart policy")
    # Recorded before the kill: if this pass dies with the worker (the ops worker) or the process
    # manager hangs, the cooldown and the loop guard still count the attempt.
    row = record(HealingKind.RESTART_WORKER, queue, trigger=trigger, rule=rule, details=details,
                 outcome=HealingOutcome.DONE, result=f"restarting {details['program']} through supervisord")
    try:
        row.result = pm.restart(details["program"])[:500]
    except ProcessManagerError as exc:
        row.outcome, row.result = HealingOutcome.FAILED, str(exc)[:500]
        with transaction.atomic():
            row.save(update_fields=["outcome", "result"])
            publish(EventType.SYSTEM_ALERT, {
                "severity": Severity.CRITICAL.value, "component": "self_healing", "service": None,
                "message": f"FAILED restart_worker {queue}: {trigger} -> {row.result}"[:2000]},
                source=Service.ANALYTICS.value)
        return row
    row.save(update_fields=["outcome", "result"])
    return row


def _still_starting(pm, program: str) -> str:
    """Why the program counts as still starting ("" when it does not): a worker process this young
    that has not beaten yet is importing its models, and killing it would be a loop of our own."""
    import time

    try:
        info = pm.processes().get(program)
    except ProcessManagerError:
        return ""
    if info is None:
        return ""
    if info.state == "STARTING":
        return "STARTING"
    age = time.time() - info.started_at
    if info.state == "RUNNING" and age < STARTUP_GRACE_SECONDS and not _has_beaten(info.pid):
        return f"RUNNING for {age:.0f}s, no heartbeat yet"
    return ""


def _has_beaten(pid: int) -> bool:
    """Whether the process with this pid has sent a heartbeat (then it is past its start-up)."""
    import socket

    from qtweb.health.models import WorkerHeartbeat

    return WorkerHeartbeat.objects.filter(pid=pid, host=socket.gethostname()).exists()


def give_up(queue: str, *, trigger: str, details: dict, rule=None) -> HealingAction:
    """Stop a worker that keeps dying, and tell the operator: restarting it again would only loop."""
    program = details.get("program") or program_for_queue(queue)
    try:
        stopped = manager().stop(program)
    except ProcessManagerError as exc:
        stopped = f"could not stop it: {exc}"
    window = settings.SELF_HEALING_RESTART_WINDOW_SECONDS
    return record(HealingKind.GIVE_UP, queue, trigger=trigger, details=details, rule=rule,
                  outcome=HealingOutcome.DONE, severity=Severity.CRITICAL,
                  result=f"{details.get('restarts_in_window')} restarts within {window:.0f}s: self-healing stops "
                         f"restarting {program} ({stopped}); an operator must fix it and resume self-healing "
                         f"(admin or POST /api/health/healing/resume/)")


def resume(queue: str, *, by: str, reason: str = "") -> HealingAction:
    """An operator lets self-healing restart a worker it gave up on, and starts it now."""
    program = program_for_queue(queue)
    try:
        from analytics.healing.process import SupervisorManager

        pm = manager()
        started = pm.restart(program) if isinstance(pm, SupervisorManager) else "left to the container runtime"
    except ProcessManagerError as exc:
        started = f"could not start it: {exc}"
    return record(HealingKind.RESUME, queue, trigger=f"operator {by}: {reason or 'resume self-healing'}",
                  details={"queue": queue, "program": program, "by": by}, outcome=HealingOutcome.DONE,
                  result=started, severity=Severity.INFO)


def restart_pool(worker: str, *, trigger: str, details: dict | None = None, rule=None) -> HealingAction | None:
    """Restart the pool processes of one Celery worker (remote control pool_restart): the memory a
    task leaked lives in them; the worker keeps consuming meanwhile."""
    details = {**(details or {}), "worker": worker}
    cooldown = settings.SELF_HEALING_RESTART_COOLDOWN_SECONDS
    if _recent(HealingKind.RESTART_POOL, worker, cooldown, outcome=None).exists():
        return None
    if analytics_shadow():
        return record(HealingKind.RESTART_POOL, worker, trigger=trigger, details=details, rule=rule,
                      outcome=HealingOutcome.SKIPPED, result="shadow: would have restarted the pool")
    from celery import current_app

    try:
        replies = current_app.control.pool_restart(destination=[worker], reply=True, timeout=5) or []
    except Exception as exc:  # broker down: the graph shows it; try again after the cooldown
        replies, error = [], f"{type(exc).__name__}: {exc}"
    else:
        error = ""
    answer = next((r[worker] for r in replies if worker in r), None)
    if answer and "ok" in answer:
        return record(HealingKind.RESTART_POOL, worker, trigger=trigger, details=details, rule=rule,
                      outcome=HealingOutcome.DONE, result=f"pool restarted: {answer['ok']}")
    return record(HealingKind.RESTART_POOL, worker, trigger=trigger, details=details, rule=rule,
                  outcome=HealingOutcome.FAILED, result=error or f"no answer from {worker}: {answer or replies}")


def _quarantine(d: policy.Decision) -> HealingAction | None:
    from ai import registry

    mv_id = d.details.get("model_version_id")
    if mv_id is None:
        return None
    if _recent(HealingKind.QUARANTINE_MODEL, d.target, settings.SELF_HEALING_RESTART_COOLDOWN_SECONDS,
               outcome=None).exists():
        return None
    if analytics_shadow():
        return record(HealingKind.QUARANTINE_MODEL, d.target, trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, result="shadow: would have quarantined it")
    try:
        registry.quarantine(int(mv_id), reason=f"{QUARANTINE_PREFIX}{d.trigger}"[:500])
    except registry.RegistryError as exc:
        return record(HealingKind.QUARANTINE_MODEL, d.target, trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, result=str(exc))
    return record(HealingKind.QUARANTINE_MODEL, d.target, trigger=d.trigger, details=d.details,
                  outcome=HealingOutcome.DONE, result="out of the vote; the ensemble goes on with the others",
                  severity=Severity.CRITICAL)


def _release(d: policy.Decision) -> HealingAction | None:
    from ai import registry
    from ai.models import ModelStatus, ModelVersion

    mv = ModelVersion.objects.filter(model_type=d.target, status=ModelStatus.CHAMPION,
                                     quarantine_reason__startswith=QUARANTINE_PREFIX).first()
    if mv is None or analytics_shadow():
        return None
    try:
        registry.release(mv.pk, reason=f"{QUARANTINE_PREFIX}{d.trigger}")
    except registry.RegistryError as exc:
        return record(HealingKind.RELEASE_MODEL, d.target, trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, result=str(exc))
    return record(HealingKind.RELEASE_MODEL, d.target, trigger=d.trigger, details=d.details,
                  outcome=HealingOutcome.DONE, result="back in the vote", severity=Severity.INFO)


def _reduce_only(d: policy.Decision) -> HealingAction | None:
    from risk.domain.modes import ModeTransitionError
    from risk.services.modes import mode_set

    if _recent(HealingKind.REDUCE_ONLY, "mode", settings.SELF_HEALING_RESTART_COOLDOWN_SECONDS,
               outcome=None).exists():
        return None
    if analytics_shadow():
        return record(HealingKind.REDUCE_ONLY, "mode", trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, result="shadow: would have set REDUCE_ONLY")
    try:
        mode_set(target=Mode.REDUCE_ONLY, reason=f"self-healing: {d.trigger}", changed_by=ACTOR, by_operator=False)
    except ModeTransitionError as exc:
        return record(HealingKind.REDUCE_ONLY, "mode", trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, result=str(exc))
    return record(HealingKind.REDUCE_ONLY, "mode", trigger=d.trigger,
                  details={**d.details, "service": "exec-risk-service"}, outcome=HealingOutcome.DONE,
                  severity=Severity.CRITICAL,
                  result="REDUCE_ONLY through the risk service: no new entries until execution is healthy")


def _restore_mode(d: policy.Decision) -> HealingAction | None:
    from risk.domain.modes import ModeTransitionError
    from risk.services.modes import mode_set

    if not d.details.get("allowed"):
        # Said once: the operator resumes by hand (SELF_HEALING_AUTO_RESUME is off).
        last = _last(HealingKind.RESTORE_MODE, "mode")
        entered = _last(HealingKind.REDUCE_ONLY, "mode")
        if last is not None and entered is not None and last.created_at > entered.created_at:
            return None
        return record(HealingKind.RESTORE_MODE, "mode", trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, severity=Severity.WARNING,
                      result="execution is healthy; the mode stays REDUCE_ONLY until an operator resumes "
                             "(SELF_HEALING_AUTO_RESUME is off)")
    if analytics_shadow():
        return None
    target = d.details["restore_to"]
    try:
        # The operator's standing permission (SELF_HEALING_AUTO_RESUME) is what makes this an
        # operator-level change; the audit row names self-healing as the one who made it.
        mode_set(target=target, reason=f"self-healing: {d.trigger} (SELF_HEALING_AUTO_RESUME allowed by the operator)",
                 changed_by=f"{ACTOR} (operator-allowed auto-resume)", by_operator=True)
    except ModeTransitionError as exc:
        return record(HealingKind.RESTORE_MODE, "mode", trigger=d.trigger, details=d.details,
                      outcome=HealingOutcome.SKIPPED, result=str(exc))
    return record(HealingKind.RESTORE_MODE, "mode", trigger=d.trigger, details=d.details,
                  outcome=HealingOutcome.DONE, severity=Severity.INFO, result=f"back to {target}")


def memory_now() -> policy.Memory:
    from ai.models import ModelStatus, ModelVersion
    from risk import selectors as risk_selectors
    from risk.services.modes import mode_get

    mode = mode_get().value
    last = risk_selectors.last_mode_change()
    ours = (last is not None and mode == Mode.REDUCE_ONLY.value and last.mode == Mode.REDUCE_ONLY.value
            and last.changed_by == ACTOR)
    rows = list(ModelVersion.objects.filter(status=ModelStatus.CHAMPION, quarantined_at__isnull=False)
                .values_list("model_type", "quarantine_reason"))
    quarantined = frozenset(t for t, reason in rows if reason.startswith(QUARANTINE_PREFIX))
    now = timezone.now()
    pools: dict[str, float] = {}
    for target, at in (HealingAction.objects.filter(
            kind=HealingKind.RESTART_POOL, outcome=HealingOutcome.DONE,
            created_at__gte=now - timedelta(seconds=settings.SELF_HEALING_RESTART_COOLDOWN_SECONDS * 3))
            .order_by("created_at").values_list("target", "created_at")):
        pools[target] = (now - at).total_seconds()  # the latest wins
    return policy.Memory(mode=mode, reduce_only_by_healing=ours,
                         mode_before_healing=last.previous_mode if ours else None,
                         quarantined_by_healing=quarantined, quarantined=frozenset(t for t, _ in rows),
                         pool_restarted_ago=pools,
                         execution_critical_seconds=_execution_critical_for())


def _execution_critical_for() -> float | None:
    """How long execution has been CRITICAL, None while it is not, or while its worker is still
    starting (a system coming up is not an execution outage)."""
    if _still_starting(manager(), program_for_queue("execution")):
        return None
    return _critical_for(f"service:{policy.EXECUTION_SERVICE}")


def _critical_for(component: str) -> float | None:
    """Seconds since the component's last transition, when that transition made it CRITICAL."""
    from analytics.models import HealthTransition

    last = HealthTransition.objects.filter(component=component).order_by("-at", "-pk").first()
    if last is None or last.status != policy.CRITICAL or not last.previous_status:
        return None  # never seen otherwise: it has not started yet, nothing was in flight
    return (timezone.now() - last.at).total_seconds()


def observe_restarts(graph: dict, previous: dict | None) -> list[HealingAction]:
    """Workers that died and were started again by the process manager between two passes (their
    pid changed). Each is alerted at once and counts towards the restart-loop guard."""
    if not previous:
        return []
    before, now = previous.get("processes") or {}, graph.get("processes") or {}
    out = []
    for program, info in sorted(now.items()):
        queue = queue_for_program(program)
        old = before.get(program)
        if queue is None or old is None or not old.get("pid") or old["pid"] == info.get("pid"):
            continue
        if not info.get("pid") or info.get("state") not in ("RUNNING", "STARTING"):
            continue  # died and not restarted: the graph has the queue CRITICAL, and we restart it
        if _recent(HealingKind.RESTART_WORKER, queue, _OWN_RESTART_GRACE_SECONDS).filter(
                details__observed=False).exists():
            continue  # our own restart
        if given_up(queue) is not None:
            continue
        trigger = f"{program} died (pid {old['pid']}, was {old.get('state')})"
        out.append(record(
            HealingKind.RESTART_WORKER, queue, outcome=HealingOutcome.DONE, severity=Severity.CRITICAL, trigger=trigger,
            result=f"restarted by the process manager: now {info.get('state')} pid {info.get('pid') or '-'}",
            details={"queue": queue, "program": program, "observed": True, "before": old, "after": info}))
        # The loop guard counts these too: a worker supervisord keeps restarting is still looping.
        done = restarts_in_window(queue)
        if done > settings.SELF_HEALING_MAX_RESTARTS and queue != SELF_QUEUE:
            out.append(give_up(queue, trigger=trigger, details={"queue": queue, "program": program,
                                                                "restarts_in_window": done}))
    return out


def overlay_processes(graph: dict) -> None:
    """Add the process manager's view to the graph, and mark a queue CRITICAL at once when its
    worker program is down (without waiting for its heartbeat to go stale)."""
    from analytics.healing.process import DOWN_STATES, processes_or_error

    procs, error = processes_or_error()
    graph["processes"] = procs
    graph["process_manager"] = {"name": settings.PROCESS_MANAGER, "error": error}
    for program, info in procs.items():
        queue = queue_for_program(program)
        q = graph.get("queues", {}).get(queue) if queue else None
        if q is None or not q.get("enabled", True) or info["state"] not in DOWN_STATES:
            continue
        reason = f"{program} is {info['state']}" + (f" ({info['description']})" if info.get("description") else "")
        q["status"] = policy.CRITICAL
        q["reasons"] = [reason, *q["reasons"]]
        svc = graph["services"].get(q["service"])
        if svc is not None and svc["status"] != policy.DISABLED:
            svc["status"] = policy.CRITICAL
            svc["reasons"] = [f"{queue}: {reason}", *svc["reasons"]]


def run(graph: dict, previous: dict | None = None) -> list[HealingAction]:
    """One self-healing pass over a graph."""
    actions = observe_restarts(graph, previous)
    decisions = policy.decide(graph, memory_now(),
                              memory_threshold_pct=settings.SELF_HEALING_MEMORY_THRESHOLD_PCT,
                              model_failures=settings.SELF_HEALING_MODEL_FAILURES,
                              model_recoveries=settings.SELF_HEALING_MODEL_RECOVERIES,
                              auto_resume=settings.SELF_HEALING_AUTO_RESUME,
                              reduce_only_after_seconds=settings.SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS,
                              settle_seconds=settings.SELF_HEALING_RESTART_COOLDOWN_SECONDS)
    for d in decisions:
        try:
            if d.kind == HealingKind.RESTART_WORKER:
                a = restart_queue_worker(d.target, trigger=d.trigger, details=d.details)
            elif d.kind == HealingKind.RESTART_POOL:
                a = restart_pool(d.target, trigger=d.trigger, details=d.details)
            elif d.kind == HealingKind.QUARANTINE_MODEL:
                a = _quarantine(d)
            elif d.kind == HealingKind.RELEASE_MODEL:
                a = _release(d)
            elif d.kind == HealingKind.REDUCE_ONLY:
                a = _reduce_only(d)
            elif d.kind == HealingKind.RESTORE_MODE:
                a = _restore_mode(d)
            else:
                raise ValueError(f"unknown decision kind {d.kind!r}")
        except SoftTimeLimitExceeded:
            raise  # out of time: the next pass decides again, on a fresh graph
        except Exception as exc:  # one failed action must not stop the others
            log.exception("self-healing action failed", kind=d.kind, target=d.target)
            a = record(d.kind, d.target, trigger=d.trigger, details=d.details, outcome=HealingOutcome.FAILED,
                       result=f"{type(exc).__name__}: {exc}")
        if a is not None:
            actions.append(a)
    return actions
