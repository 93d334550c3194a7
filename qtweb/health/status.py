"""Health of the system: dependencies, queues, and each service from its workers' heartbeats.

Rules (README "Health"):
- a queue is up when at least one worker on it beat within HEARTBEAT_STALE_SECONDS (15 s);
- a service is HEALTHY when all its queues are up and its modules report HEALTHY, DEGRADED when
  a module does not, CRITICAL when a queue has no live worker (or none ever reported), and
  DISABLED when its *_SERVICE_ENABLED switch is off (not a fault: nothing is expected of it);
- the web is CRITICAL (HTTP 503) when the database or Redis is unreachable, DEGRADED when
  any enabled service is not HEALTHY, else HEALTHY.

The analytics-os service builds the full health graph on top of this (analytics/health/graph.py).
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from qtweb.events.schemas import HealthState
from qtweb.metrics import PROCESS_STARTED_AT
from qtweb.queues import SERVICE_QUEUES, Queue, Service


def _now() -> datetime:
    return datetime.now(UTC)


def check_database() -> dict:
    t0 = time.perf_counter()
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return {"status": HealthState.HEALTHY.value, "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
                "engine": connection.vendor}
    except Exception as exc:
        return {"status": HealthState.CRITICAL.value, "error": f"{type(exc).__name__}: {exc}"[:300],
                "engine": connection.vendor}


_redis_client = None


def redis_client():
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis_client


def check_redis() -> dict:
    t0 = time.perf_counter()
    try:
        redis_client().ping()
        return {"status": HealthState.HEALTHY.value, "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}
    except Exception as exc:
        return {"status": HealthState.CRITICAL.value, "error": f"{type(exc).__name__}: {exc}"[:300]}


def queue_depths() -> dict[str, int]:
    client = redis_client()
    pipe = client.pipeline()
    for q in Queue:
        pipe.llen(q.value)
    return {q.value: int(n) for q, n in zip(Queue, pipe.execute(), strict=True)}


def message_sent_at(raw: bytes | str | None) -> float | None:
    """The publish time stamped on a broker message (qtweb/worker.py), None when absent/unreadable."""
    import json

    from qtweb.worker import SENT_AT_HEADER

    if not raw:
        return None
    try:
        value = (json.loads(raw).get("headers") or {}).get(SENT_AT_HEADER)
        return float(value) if isinstance(value, int | float) else None
    except (ValueError, AttributeError, TypeError):
        return None


def queue_backlog(now: float | None = None) -> dict[str, dict]:
    """Per queue: messages waiting and the age of the oldest (kombu pushes on the left and workers
    pop on the right, so the oldest message is the last element)."""
    client = redis_client()
    pipe = client.pipeline()
    for q in Queue:
        pipe.llen(q.value)
        pipe.lindex(q.value, -1)
    out = pipe.execute()
    now = time.time() if now is None else now
    backlog = {}
    for i, q in enumerate(Queue):
        depth, oldest = int(out[2 * i]), message_sent_at(out[2 * i + 1])
        backlog[q.value] = {"depth": depth,
                            "oldest_age_seconds": round(max(0.0, now - oldest), 1) if oldest is not None else None}
    return backlog


def evaluate_services(heartbeats, now: datetime, stale_seconds: float,
                      disabled: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Pure rule: per service, per queue, the freshest live worker decides. `heartbeats` are
    WorkerHeartbeat-like objects (service, queue, worker, last_seen, stopped_at, stats);
    `disabled` names the services switched off."""
    out: dict[str, dict] = {}
    for service, queues in SERVICE_QUEUES.items():
        q_status = {}
        ages = []
        for q in queues:
            rows = [h for h in heartbeats if h.service == service.value and h.queue == q.value]
            live = [h for h in rows if h.stopped_at is None]
            freshest = max((h.last_seen for h in live), default=None)
            age = (now - freshest).total_seconds() if freshest else None
            up = age is not None and age <= stale_seconds
            q_status[q.value] = {
                "up": up,
                "last_heartbeat_age_seconds": round(age, 1) if age is not None else None,
                "workers": [
                    {"worker": h.worker, "pid": h.pid if hasattr(h, "pid") else None,
                     "age_seconds": round((now - h.last_seen).total_seconds(), 1),
                     "stopped": h.stopped_at is not None, **(h.stats or {})}
                    for h in rows
                ],
                "reported": bool(rows),
            }
            if age is not None:
                ages.append(age)
        if service.value in disabled:
            status, reason = HealthState.DISABLED, f"switched off ({service_switch_name(service)}=false)"
        elif all(v["up"] for v in q_status.values()):
            status, reason = HealthState.HEALTHY, ""
        elif any(v["reported"] for v in q_status.values()):
            down = [q for q, v in q_status.items() if not v["up"]]
            status, reason = HealthState.CRITICAL, f"no heartbeat within {stale_seconds:.0f}s on: {', '.join(down)}"
        else:
            status, reason = HealthState.CRITICAL, "no worker has ever reported"
        out[service.value] = {
            "status": status.value,
            "reason": reason,
            "last_heartbeat_age_seconds": round(max(ages), 1) if ages else None,
            "queues": q_status,
        }
    return out


# Modules inside a service (a model, a feed) report their own state here; a module that is
# not HEALTHY makes its service DEGRADED. Kept in the cache (Redis) so every process of the
# service, and the web, sees the latest report; a report expires unless renewed.
MODULE_REPORT_TTL_SECONDS = 3600


def _modules_key(service: str) -> str:
    return f"health:modules:{service}"


def report_module(service: str, module: str, status: HealthState | str, reason: str = "", **details) -> None:
    """`details` (JSON-able) ride along for whoever acts on the report (self-healing reads a model's
    failure streak from them)."""
    from django.core.cache import cache

    try:
        current = cache.get(_modules_key(service)) or {}
        current[module] = {"status": HealthState(status).value, "reason": reason[:300], "at": _now().isoformat(),
                           **details}
        cache.set(_modules_key(service), current, timeout=MODULE_REPORT_TTL_SECONDS)
    except Exception:  # health reporting must never break the work it reports on
        pass


def module_reports(service: str) -> dict[str, dict]:
    from django.core.cache import cache

    try:
        return cache.get(_modules_key(service)) or {}
    except Exception:
        return {}


def service_switch_name(service: Service) -> str:
    from qtweb.queues import _SWITCH_PREFIX

    return f"{_SWITCH_PREFIX[service]}_ENABLED"


def disabled_services() -> frozenset[str]:
    from qtweb.queues import service_enabled

    return frozenset(s.value for s in SERVICE_QUEUES if not service_enabled(s))


def service_statuses(now: datetime | None = None) -> dict[str, dict]:
    from qtweb.health.models import WorkerHeartbeat

    now = now or _now()
    out = evaluate_services(list(WorkerHeartbeat.objects.all()), now, settings.HEARTBEAT_STALE_SECONDS,
                            disabled_services())
    for name, svc in out.items():
        if svc["status"] == HealthState.DISABLED.value:
            svc["modules"] = {}
            continue
        modules = module_reports(name)
        svc["modules"] = modules
        bad = [f"{m}: {r['reason'] or r['status']}" for m, r in sorted(modules.items())
               if r["status"] != HealthState.HEALTHY.value]
        if bad and svc["status"] == HealthState.HEALTHY.value:
            svc["status"] = HealthState.DEGRADED.value
            svc["reason"] = "; ".join(bad)
    return out


def overall(dependencies: dict[str, dict], services: dict[str, dict] | None) -> tuple[str, list[str]]:
    reasons = [f"{name}: {d.get('error', d['status'])}" for name, d in dependencies.items()
               if d["status"] != HealthState.HEALTHY.value]
    if reasons:
        return HealthState.CRITICAL.value, reasons
    if services:
        bad = [f"{name}: {s['status']} {s['reason']}".strip() for name, s in services.items()
               if s["status"] not in (HealthState.HEALTHY.value, HealthState.DISABLED.value)]
        if bad:
            return HealthState.DEGRADED.value, bad
    return HealthState.HEALTHY.value, []


def web_health() -> tuple[dict, int]:
    deps = {"database": check_database(), "redis": check_redis()}
    services = service_statuses() if deps["database"]["status"] == HealthState.HEALTHY.value else None
    status, reasons = overall(deps, services)
    body = {
        "service": Service.WEB.value,
        "status": status,
        "uptime_seconds": round(time.time() - PROCESS_STARTED_AT, 1),
        "timestamp": _now().isoformat(),
        "dependencies": deps,
        "modules": {"api": {"status": HealthState.HEALTHY.value}, "websocket": {"status": HealthState.HEALTHY.value}},
        "services": services or {},
        "reasons": reasons,
    }
    return body, 503 if status == HealthState.CRITICAL.value else 200


def worker_health(service: Service, local_queues: dict[str, dict]) -> tuple[dict, int]:
    """Health of a worker service as served on its own port. `local_queues` describes the
    queues this process consumes ({queue: {"status": ..., ...}})."""
    deps = {"database": check_database(), "broker": check_redis()}
    services = service_statuses() if deps["database"]["status"] == HealthState.HEALTHY.value else {}
    mine = services.get(service.value)
    status, reasons = overall(deps, {service.value: mine} if mine else None)
    body = {
        "service": service.value,
        "status": status,
        "uptime_seconds": round(time.time() - PROCESS_STARTED_AT, 1),
        "timestamp": _now().isoformat(),
        "dependencies": deps,
        "modules": {**local_queues, **({"queues": mine["queues"]} if mine else {}),
                    **(mine or {}).get("modules", {})},
        "reasons": reasons,
    }
    return body, 503 if status == HealthState.CRITICAL.value else 200
