"""The health monitor: one pass builds the health graph, records and alerts its transitions, lets
self-healing act and evaluates the alert rules.

Runs on the ops queue every few seconds (qtweb/schedules.py). Publishes `health.status` when any
service's status changes and at least every HEALTH_STATUS_REPUBLISH_SECONDS otherwise (so a
dashboard opened later catches up), and a `system.alert` for each service or dependency that
changes status: CRITICAL ones (a queue without a live worker for more than
HEARTBEAT_STALE_SECONDS, a dead worker, a stuck queue) at severity critical.
"""
from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache

from analytics.health import graph as health_graph
from qtweb.events import EventType, publish
from qtweb.events.schemas import HealthState, Severity
from qtweb.logging import get_logger
from qtweb.queues import Service, service_enabled

log = get_logger(__name__)

HEALTH_STATUS_REPUBLISH_SECONDS = 30
_CACHE_KEY = "analytics:health:last"

_SEVERITY = {HealthState.CRITICAL.value: Severity.CRITICAL, HealthState.DEGRADED.value: Severity.WARNING,
             HealthState.HEALTHY.value: Severity.INFO, HealthState.DISABLED.value: Severity.INFO}


def overall_status(services: dict[str, dict]) -> HealthState:
    return HealthState(health_graph.worst(s["status"] for s in services.values()))


def transitions(previous: dict[str, str], current: dict[str, str]) -> list[tuple[str, str | None, str]]:
    """(service, old, new) for each service whose status changed."""
    return [(name, previous.get(name), new) for name, new in current.items() if previous.get(name) != new]


def _alert(component: str, old: str, new: str, reasons: list[str], service: str | None) -> None:
    publish(EventType.SYSTEM_ALERT, {
        "severity": _SEVERITY.get(new, Severity.WARNING).value, "component": "health_monitor", "service": service,
        "message": f"{component} {old or '-'} -> {new}: {'; '.join(reasons) or 'all parts healthy'}"[:2000],
    }, source=Service.ANALYTICS.value)


_LOCK_KEY = "analytics:health:evaluating"
_LOCK_SECONDS = 120  # well past the task's hard time limit (60 s): a killed pass frees it by expiry


def evaluate_exclusively() -> dict | None:
    """One pass at a time across every ops process: two passes deciding on the same graph would
    both restart the same worker (the cooldown is read before either records). None when another
    pass holds the lock; the next beat tries again."""
    import uuid

    token = uuid.uuid4().hex
    if not cache.add(_LOCK_KEY, token, timeout=_LOCK_SECONDS):
        log.info("health pass skipped: another one is running")
        return None
    try:
        return evaluate()
    finally:
        if cache.get(_LOCK_KEY) == token:  # a pass that outlived its lock must not free another's
            cache.delete(_LOCK_KEY)


def evaluate() -> dict:
    from analytics.healing import service as healing

    previous = health_graph.latest()
    graph = health_graph.build()
    healing.overlay_processes(graph)
    health_graph.summarize(graph)
    changed = health_graph.record_transitions(graph, previous)
    for component, old, new, reasons in changed:
        kind, _, name = component.partition(":")
        # Services and dependencies are what operators act on; a queue, worker or module change
        # shows in its service's reasons. A component seen for the first time is not news.
        if kind in ("service", "dependency") and old:
            _alert(component, old, new, reasons, name if kind == "service" else None)

    statuses = {name: s["status"] for name, s in graph["services"].items()}
    last = cache.get(_CACHE_KEY) or {"statuses": {}, "published_at": 0.0}
    now = time.time()
    published = False
    if transitions(last["statuses"], statuses) or now - last["published_at"] >= HEALTH_STATUS_REPUBLISH_SECONDS:
        publish(EventType.HEALTH_STATUS, {
            "status": graph["status"],
            "services": {name: {"status": s["status"],
                                "heartbeat_age_seconds": _service_heartbeat_age(graph, s),
                                "reason": "; ".join(s["reasons"])[:2000]} for name, s in graph["services"].items()},
            "reason": "; ".join(graph["reasons"])[:2000],
        }, source=Service.ANALYTICS.value)
        published = True
        cache.set(_CACHE_KEY, {"statuses": statuses, "published_at": now}, timeout=None)

    actions, firings = [], []
    if service_enabled(Service.ANALYTICS):
        # Each part on its own: a failing alert rule must not stop self-healing, nor the reverse.
        try:
            actions = healing.run(graph, previous)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            log.exception("self-healing pass failed")
        try:
            from analytics.alerting.evaluate import evaluate_rules

            firings = evaluate_rules(graph)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            log.exception("alert rules pass failed")
    graph["healing"] = [{"id": a.pk, "kind": a.kind, "target": a.target, "outcome": a.outcome, "result": a.result}
                        for a in actions]
    health_graph.store(graph)
    return {"statuses": statuses, "published": published, "changed": changed, "actions": actions,
            "firings": firings, "graph": graph}


def _service_heartbeat_age(graph: dict, service: dict) -> float | None:
    ages = [graph["queues"][q]["heartbeat_age_seconds"] for q in service["queues"]
            if graph["queues"][q]["heartbeat_age_seconds"] is not None]
    return max(ages) if ages else None
