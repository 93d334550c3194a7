"""Health of the system: dependencies, queues, and each service from its workers' heartbeats.

Rules (README "Health"):
- a queue is up when at least one worker on it beat within HEARTBEAT_STALE_SECONDS (15 s);
- a service is HEALTHY when all its queues are up, DEGRADED otherwise (it still has a
  record, so somebody can act), UNHEALTHY when it never reported;
- the web is UNHEALTHY (HTTP 503) when the database or Redis is unreachable, DEGRADED when
  any service is not HEALTHY, else HEALTHY.
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
        return {"status": HealthState.UNHEALTHY.value, "error": f"{type(exc).__name__}: {exc}"[:300],
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
        return {"status": HealthState.UNHEALTHY.value, "error": f"{type(exc).__name__}: {exc}"[:300]}


def queue_depths() -> dict[str, int]:
    client = redis_client()
    pipe = client.pipeline()
    for q in Queue:
        pipe.llen(q.value)
    return {q.value: int(n) for q, n in zip(Queue, pipe.execute(), strict=True)}


def evaluate_services(heartbeats, now: datetime, stale_seconds: float) -> dict[str, dict]:
    """Pure rule: per service, per queue, the freshest live worker decides. `heartbeats` are
    WorkerHeartbeat-like objects (service, queue, worker, last_seen, stopped_at, stats)."""
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
        if all(v["up"] for v in q_status.values()):
            status, reason = HealthState.HEALTHY, ""
        elif any(v["reported"] for v in q_status.values()):
            down = [q for q, v in q_status.items() if not v["up"]]
            status, reason = HealthState.DEGRADED, f"no heartbeat within {stale_seconds:.0f}s on: {', '.join(down)}"
        else:
            status, reason = HealthState.UNHEALTHY, "no worker has ever reported"
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


def report_module(service: str, module: str, status: HealthState | str, reason: str = "") -> None:
    from django.core.cache import cache

    try:
        current = cache.get(_modules_key(service)) or {}
        current[module] = {"status": HealthState(status).value, "reason": reason[:300], "at": _now().isoformat()}
        cache.set(_modules_key(service), current, timeout=MODULE_REPORT_TTL_SECONDS)
    except Exception:  # health reporting must never break the work it reports on
        pass


def module_reports(service: str) -> dict[str, dict]:
    from django.core.cache import cache

    try:
        return cache.get(_modules_key(service)) or {}
    except Exception:
        return {}


def service_statuses(now: datetime | None = None) -> dict[str, dict]:
    from qtweb.health.models import WorkerHeartbeat

    now = now or _now()
    out = evaluate_services(list(WorkerHeartbeat.objects.all()), now, settings.HEARTBEAT_STALE_SECONDS)
    for name, svc in out.items():
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
        return HealthState.UNHEALTHY.value, reasons
    if services:
        bad = [f"{name}: {s['status']} {s['reason']}".strip() for name, s in services.items()
               if s["status"] != HealthState.HEALTHY.value]
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
    return body, 503 if status == HealthState.UNHEALTHY.value else 200


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
    return body, 503 if status == HealthState.UNHEALTHY.value else 200
