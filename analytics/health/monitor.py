"""The health monitor: turns heartbeats into `health.status` and `system.alert` events.

Runs on the ops queue every few seconds (qtweb/schedules.py). Publishes `health.status` when
any service's status changes and at least every HEALTH_STATUS_REPUBLISH_SECONDS otherwise (so
a dashboard opened later catches up), and a `system.alert` for each service that leaves
HEALTHY (warning) or comes back (info).
"""
from __future__ import annotations

import time

from django.core.cache import cache

from qtweb.events import EventType, publish
from qtweb.events.schemas import HealthState, Severity
from qtweb.health.status import service_statuses
from qtweb.queues import Service

HEALTH_STATUS_REPUBLISH_SECONDS = 30
_CACHE_KEY = "analytics:health:last"


def overall_status(services: dict[str, dict]) -> HealthState:
    states = {s["status"] for s in services.values()}
    if HealthState.UNHEALTHY.value in states:
        return HealthState.UNHEALTHY
    if HealthState.DEGRADED.value in states:
        return HealthState.DEGRADED
    return HealthState.HEALTHY


def transitions(previous: dict[str, str], current: dict[str, str]) -> list[tuple[str, str | None, str]]:
    """(service, old, new) for each service whose status changed."""
    return [(name, previous.get(name), new) for name, new in current.items() if previous.get(name) != new]


def evaluate() -> dict:
    services = service_statuses()
    current = {name: s["status"] for name, s in services.items()}
    last = cache.get(_CACHE_KEY) or {"statuses": {}, "published_at": 0.0}
    changed = transitions(last["statuses"], current)
    now = time.time()
    published = False
    if changed or now - last["published_at"] >= HEALTH_STATUS_REPUBLISH_SECONDS:
        state = overall_status(services)
        publish(EventType.HEALTH_STATUS, {
            "status": state.value,
            "services": {name: {"status": s["status"], "heartbeat_age_seconds": s["last_heartbeat_age_seconds"],
                                "reason": s["reason"]} for name, s in services.items()},
            "reason": "; ".join(f"{n}: {s['reason']}" for n, s in services.items() if s["reason"]),
        }, source=Service.ANALYTICS.value)
        published = True
        for name, old, new in changed:
            if old is None:
                continue  # first evaluation after a restart: no transition to report
            severity = Severity.INFO if new == HealthState.HEALTHY.value else Severity.WARNING
            publish(EventType.SYSTEM_ALERT, {
                "severity": severity.value, "component": "health_monitor", "service": name,
                "message": f"{name} {old} -> {new}: {services[name]['reason'] or 'all queues beating'}",
            }, source=Service.ANALYTICS.value)
        cache.set(_CACHE_KEY, {"statuses": current, "published_at": now}, timeout=None)
    return {"statuses": current, "published": published, "changed": changed}
