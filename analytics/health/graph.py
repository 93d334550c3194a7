"""The health graph: every service, queue, worker, module and dependency, with a status and reasons.

Built every few seconds on the ops queue (analytics/health/monitor.py). The latest graph is kept
in Redis (the dashboard, the API and RPC `get_system_health` read it); every status change is a
HealthTransition row, so the history survives the cache.

Statuses: HEALTHY, DEGRADED (works, with a problem someone should look at), CRITICAL (a part is
down: no live worker on a queue, a queue stuck, a dependency unreachable), DISABLED (switched off).
`assess()` is the pure rule; `build()` gathers the facts.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from qtweb.events.schemas import HealthState
from qtweb.queues import SERVICE_QUEUES, Queue, service_enabled, service_shadow

CACHE_KEY = "analytics:health:graph"
CACHE_SECONDS = 3600  # a graph older than its generated_at says so; an absent one is "unknown"

_RANK = {HealthState.DISABLED.value: -1, HealthState.HEALTHY.value: 0, HealthState.DEGRADED.value: 1,
         HealthState.CRITICAL.value: 2}

# A retraining job holds the learning worker for up to its time limit (analytics/tasks.py), and the
# drift checks queued behind it wait that long without anything being wrong.
_LONGEST_TASK_SECONDS = {Queue.LEARNING.value: 3600.0}


def worst(statuses) -> str:
    statuses = [s for s in statuses if s != HealthState.DISABLED.value]
    return max(statuses, key=_RANK.__getitem__, default=HealthState.HEALTHY.value)


def stuck_after_seconds(queue: str) -> float:
    """How long the oldest message may wait on `queue` while its worker beats before the queue
    counts as stuck."""
    base = float(settings.QUEUE_STUCK_SECONDS)
    longest = _LONGEST_TASK_SECONDS.get(queue)
    return base if longest is None else max(base, longest + 300.0)


def assess(*, heartbeats: list[dict], backlog: dict[str, dict], dependencies: dict[str, dict],
           modules: dict[str, dict[str, dict]], enabled: dict[str, bool], shadow: dict[str, bool],
           stale_seconds: float, memory_threshold_pct: float, stuck_after: dict[str, float]) -> dict[str, Any]:
    """Pure: the facts in, the graph out (without generated_at).

    `heartbeats`: one dict per worker row (worker, service, queue, host, pid, heartbeat_age_seconds,
    shut_down, stats). `backlog`: {queue: {depth, oldest_age_seconds}} or {} when Redis is down.
    `modules`: {service: {module: report}}."""
    workers: dict[str, dict] = {}
    for hb in heartbeats:
        stats = hb.get("stats") or {}
        reasons, status = [], HealthState.HEALTHY.value
        age = hb["heartbeat_age_seconds"]
        if hb["shut_down"]:
            status, reasons = HealthState.DISABLED.value, ["shut down cleanly"]
        elif age > stale_seconds:
            status, reasons = HealthState.CRITICAL.value, [f"no heartbeat for {age:.0f}s (> {stale_seconds:.0f}s)"]
        else:
            mem = stats.get("memory_percent")
            if isinstance(mem, int | float) and mem > memory_threshold_pct:
                status = HealthState.DEGRADED.value
                reasons.append(f"memory {mem:.1f}% > {memory_threshold_pct:g}%")
        workers[hb["worker"]] = {
            "service": hb["service"], "queue": hb["queue"], "host": hb["host"], "pid": hb["pid"],
            "heartbeat_age_seconds": round(age, 1), "shut_down": hb["shut_down"],
            "memory_percent": stats.get("memory_percent"), "rss_mb": stats.get("rss_mb"),
            "cpu_percent": stats.get("cpu_percent"), "active_tasks": stats.get("active_tasks"),
            "uptime_seconds": stats.get("uptime_seconds"), "started_at": hb.get("started_at"),
            "status": status, "reasons": reasons,
        }

    queues: dict[str, dict] = {}
    for service, qs in SERVICE_QUEUES.items():
        for q in qs:
            q = q.value
            on = [w for w, info in workers.items() if info["queue"] == q and not info["shut_down"]]
            live = [w for w in on if workers[w]["heartbeat_age_seconds"] <= stale_seconds]
            ages = [workers[w]["heartbeat_age_seconds"] for w in on]
            b = backlog.get(q) or {}
            depth, oldest = b.get("depth"), b.get("oldest_age_seconds")
            reasons, status = [], HealthState.HEALTHY.value
            if not enabled[service.value]:
                status, reasons = HealthState.DISABLED.value, ["its service is switched off"]
            elif not live:
                status = HealthState.CRITICAL.value
                stopped = sorted(w for w, info in workers.items() if info["queue"] == q and info["shut_down"])
                if ages:
                    reasons = [f"no heartbeat within {stale_seconds:.0f}s (last {min(ages):.0f}s ago)"]
                elif stopped:
                    reasons = [f"no live worker ({', '.join(stopped)} shut down)"]
                else:
                    reasons = ["no worker has ever reported"]
            elif oldest is not None and oldest > stuck_after[q]:
                status = HealthState.CRITICAL.value
                reasons = [f"stuck: the oldest of {depth} messages has waited {oldest:.0f}s (> {stuck_after[q]:.0f}s) "
                           f"while {', '.join(live)} beats"]
            queues[q] = {"service": service.value, "status": status, "reasons": reasons, "depth": depth,
                         "oldest_age_seconds": oldest, "heartbeat_age_seconds": min(ages) if ages else None,
                         "stuck_after_seconds": stuck_after[q], "workers": sorted(on), "live_workers": sorted(live),
                         "enabled": enabled[service.value]}

    services: dict[str, dict] = {}
    for service, qs in SERVICE_QUEUES.items():
        name = service.value
        mods = modules.get(name) or {}
        if not enabled[name]:
            services[name] = {"status": HealthState.DISABLED.value, "reasons": ["switched off"], "enabled": False,
                              "shadow": shadow[name], "queues": [q.value for q in qs], "modules": {}}
            continue
        reasons = [f"{q.value}: {r}" for q in qs for r in queues[q.value]["reasons"]]
        statuses = [queues[q.value]["status"] for q in qs]
        for m, report in sorted(mods.items()):
            statuses.append(report.get("status", HealthState.DEGRADED.value))
            if report.get("status") != HealthState.HEALTHY.value:
                reasons.append(f"{m}: {report.get('reason') or report.get('status')}")
        for w, info in sorted(workers.items()):
            if info["service"] == name and info["status"] == HealthState.DEGRADED.value:
                statuses.append(info["status"])
                reasons.extend(f"{w}: {r}" for r in info["reasons"])
        services[name] = {"status": worst(statuses), "reasons": reasons, "enabled": True, "shadow": shadow[name],
                          "queues": [q.value for q in qs], "modules": mods}

    return summarize({"dependencies": dependencies, "queues": queues, "workers": workers, "services": services})


def summarize(graph: dict) -> dict:
    """Set the graph's overall status and reasons from its dependencies and services."""
    deps, services = graph["dependencies"], graph["services"]
    graph["status"] = worst([*(d["status"] for d in deps.values()), *(s["status"] for s in services.values())])
    reasons = [f"{n}: {d.get('error', d['status'])}" for n, d in deps.items()
               if d["status"] != HealthState.HEALTHY.value]
    reasons += [f"{n}: {'; '.join(s['reasons'])}" for n, s in services.items()
                if s["status"] not in (HealthState.HEALTHY.value, HealthState.DISABLED.value)]
    graph["reasons"] = reasons
    return graph


def components(graph: dict) -> dict[str, tuple[str, list[str]]]:
    """Every component of a graph by its id -> (status, reasons): what transitions are kept for."""
    out: dict[str, tuple[str, list[str]]] = {"system": (graph["status"], graph["reasons"])}
    for name, d in graph["dependencies"].items():
        out[f"dependency:{name}"] = (d["status"], [d["error"]] if d.get("error") else [])
    for name, q in graph["queues"].items():
        out[f"queue:{name}"] = (q["status"], q["reasons"])
    for name, w in graph["workers"].items():
        out[f"worker:{name}"] = (w["status"], w["reasons"])
    for name, s in graph["services"].items():
        out[f"service:{name}"] = (s["status"], s["reasons"])
        for m, r in s["modules"].items():
            out[f"module:{name}/{m}"] = (r.get("status", ""), [r["reason"]] if r.get("reason") else [])
    return out


def build(now: datetime | None = None) -> dict[str, Any]:
    """Gather the facts (heartbeat rows, Redis backlog, dependency checks, module reports)."""
    from qtweb.health.models import WorkerHeartbeat
    from qtweb.health.status import check_database, check_redis, module_reports, queue_backlog

    now = now or datetime.now(UTC)
    dependencies = {"database": check_database(), "redis": check_redis()}
    try:
        backlog = queue_backlog(now.timestamp())
    except Exception:  # Redis down: the redis dependency says so; queues fall back to heartbeats
        backlog = {}
    try:
        rows = list(WorkerHeartbeat.objects.all())
    except Exception:
        rows = []
    # Heartbeat rows of workers that stopped long ago are history, not parts of the system.
    keep_stopped = float(settings.HEARTBEAT_RETENTION_HOURS) * 3600
    heartbeats = [{"worker": r.worker, "service": r.service, "queue": r.queue, "host": r.host, "pid": r.pid,
                   "heartbeat_age_seconds": (now - r.last_seen).total_seconds(), "shut_down": r.stopped_at is not None,
                   "started_at": r.started_at.isoformat(), "stats": r.stats}
                  for r in rows if r.stopped_at is None or (now - r.stopped_at).total_seconds() < keep_stopped]
    names = [s.value for s in SERVICE_QUEUES]
    enabled = {n: service_enabled(n) for n in names}
    graph = assess(heartbeats=heartbeats, backlog=backlog, dependencies=dependencies,
                   modules={n: module_reports(n) for n in names if enabled[n]}, enabled=enabled,
                   shadow={n: service_shadow(n) for n in names},
                   stale_seconds=float(settings.HEARTBEAT_STALE_SECONDS),
                   memory_threshold_pct=float(settings.SELF_HEALING_MEMORY_THRESHOLD_PCT),
                   stuck_after={q.value: stuck_after_seconds(q.value) for q in Queue})
    graph["generated_at"] = now.isoformat()
    return graph


def store(graph: dict) -> None:
    cache.set(CACHE_KEY, graph, timeout=CACHE_SECONDS)


def latest() -> dict | None:
    """The last graph the monitor built (None when none was built within CACHE_SECONDS)."""
    try:
        return cache.get(CACHE_KEY)
    except Exception:
        return None


def record_transitions(graph: dict, previous: dict | None) -> list[tuple[str, str, str, list[str]]]:
    """Write a HealthTransition for every component whose status changed since `previous` (when the
    cache lost it, since the last recorded transition of that component). Returns the changes."""
    from analytics.models import HealthTransition
    from qtweb.tracing import current_trace_id

    current = components(graph)
    if previous is not None:
        before = {k: v[0] for k, v in components(previous).items()}
    else:
        before = {}
        for row in HealthTransition.objects.filter(component__in=list(current)).order_by("component", "-at", "-pk"):
            before.setdefault(row.component, row.status)
    changed = [(comp, before.get(comp, ""), status, reasons) for comp, (status, reasons) in current.items()
               if before.get(comp) != status]
    # A queue, worker or module first seen HEALTHY is not news (there are many, and they come and
    # go). A service, dependency or the system is recorded even then: after the cached graph is
    # lost, its last row is what a later outage is compared with.
    always = ("service", "dependency", "system")
    changed = [c for c in changed if c[1] or c[2] != HealthState.HEALTHY.value or c[0].split(":", 1)[0] in always]
    at = datetime.fromisoformat(graph["generated_at"])
    HealthTransition.objects.bulk_create([
        HealthTransition(component=comp, previous_status=old, status=new, reasons=reasons[:20], at=at,
                         trace_id=current_trace_id() or "")
        for comp, old, new, reasons in changed])
    return changed
