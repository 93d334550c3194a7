"""Measuring an alert rule's metric: its value per subject, from the health graph, the account
snapshot and the learning manager's drift checks.

Only known values are returned. A subject whose value is unknown is absent, so a rule never acts
on it: a queue no live worker has reported on (nothing to restart; the health graph still calls
it CRITICAL), a worker whose heartbeat went stale (its last memory figure is old news), an
account snapshot that is missing, stale or from another UTC day (the drawdown rule must not
emergency-stop on unknown data), a champion without a drift score. Unknown is not "all is well"
either: it is logged, and an open firing stays open until a measurement shows the condition
gone (analytics/alerting/evaluate.py).

Queues and workers of a disabled service, and workers that stopped cleanly, are not measured:
switched off is not down.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from analytics.alerting import catalog
from core.decimals import ZERO
from qtweb.logging import get_logger
from qtweb.queues import Service

log = get_logger(__name__)

Graph = dict[str, Any]


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _service_enabled(graph: Graph, service: str | None) -> bool:
    return bool(((graph.get("services") or {}).get(service) or {}).get("enabled", True))


def live_queues(graph: Graph) -> Iterator[tuple[str, dict]]:
    """The queues whose service is switched on."""
    for name, q in sorted((graph.get("queues") or {}).items()):
        if q.get("enabled", True) and _service_enabled(graph, q.get("service")):
            yield name, q


def live_workers(graph: Graph) -> Iterator[tuple[str, dict]]:
    """The workers that have not stopped, of services that are switched on (stale ones included)."""
    for name, w in sorted((graph.get("workers") or {}).items()):
        if not w.get("shut_down") and _service_enabled(graph, w.get("service")):
            yield name, w


def _queue_field(field: str) -> Callable[[Graph, datetime], dict[str, float]]:
    def measure(graph: Graph, now: datetime) -> dict[str, float]:
        # heartbeat_age_seconds is None when no live worker ever reported on the queue (or all
        # stopped cleanly): nothing to restart, so the rule leaves it to the health graph.
        return {name: float(q[field]) for name, q in live_queues(graph) if _number(q.get(field))}

    return measure


def _worker_memory(graph: Graph, now: datetime) -> dict[str, float]:
    stale = float(settings.HEARTBEAT_STALE_SECONDS)
    out = {}
    for name, w in live_workers(graph):
        age = w.get("heartbeat_age_seconds")
        if _number(age) and age <= stale and _number(w.get("memory_percent")):
            out[name] = float(w["memory_percent"])
    return out


def _dependency_latency(dependency: str) -> Callable[[Graph, datetime], dict[str, float]]:
    def measure(graph: Graph, now: datetime) -> dict[str, float]:
        d = (graph.get("dependencies") or {}).get(dependency) or {}
        return {dependency: float(d["latency_ms"])} if _number(d.get("latency_ms")) else {}

    return measure


def account_drawdown_pct(now: datetime | None = None) -> tuple[str, Decimal] | None:
    """(exchange, drawdown %) of the execution account from the snapshot the execution side
    keeps, with the safety governor's formula (risk/domain/governor.py: from the UTC day's
    starting equity); 0 on a winning day. None when the account state is unknown: no
    snapshot, one older than ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS, or one from another UTC day.

    The snapshot, not the exchange: the analytics service never talks to an exchange itself
    (the same reason RL sizing reads it)."""
    from risk.domain.governor import drawdown_pct
    from trading import selectors as trading_sel
    from trading.snapshots import snapshot_get

    now = now or datetime.now(UTC)
    exchange = trading_sel.execution_exchange()
    snapshot = snapshot_get(exchange)
    if snapshot is None:
        log.info("drawdown unknown: no account snapshot", exchange=exchange)
        return None
    age = snapshot.age_seconds(now)
    bound = float(settings.ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS)
    if age > bound:
        log.info("drawdown unknown: the account snapshot is stale", exchange=exchange, age_seconds=round(age, 1),
                 bound_seconds=bound)
        return None
    if snapshot.taken_at.astimezone(UTC).date() != now.astimezone(UTC).date():
        log.info("drawdown unknown: the account snapshot is from another UTC day", exchange=exchange,
                 taken_at=snapshot.taken_at.isoformat())
        return None
    if snapshot.day_start_equity_usd <= 0:
        log.info("drawdown unknown: no starting equity for the day", exchange=exchange)
        return None
    return exchange, max(ZERO, drawdown_pct(snapshot.equity_usd, snapshot.day_start_equity_usd))


def _drawdown(graph: Graph, now: datetime) -> dict[str, float]:
    found = account_drawdown_pct(now)
    return {} if found is None else {found[0]: float(found[1])}


def _drift(graph: Graph, now: datetime) -> dict[str, float]:
    from analytics.learning.monitor import drift_summary

    return {row["model_type"]: float(row["drift_score"]) for row in drift_summary()
            if _number(row.get("drift_score"))}


_MEASURES: dict[str, Callable[[Graph, datetime], dict[str, float]]] = {
    "heartbeat_missing_seconds": _queue_field("heartbeat_age_seconds"),
    "queue_oldest_message_seconds": _queue_field("oldest_age_seconds"),
    "queue_depth": _queue_field("depth"),
    "memory_percent": _worker_memory,
    "drawdown_pct": _drawdown,
    "drift_score": _drift,
    "database_latency_ms": _dependency_latency("database"),
    "redis_latency_ms": _dependency_latency("redis"),
}


def measure(metric_name: str, graph: Graph, *, now: datetime | None = None) -> dict[str, float]:
    """{subject: value} of the known values of `metric_name` now (KeyError for a metric the
    catalogue does not know). Subjects: queue names, worker names (queue@host), the account's
    exchange id, model types, dependency names."""
    return _MEASURES[metric_name](graph, now or datetime.now(UTC))


def present_subjects(metric_name: str, graph: Graph) -> set[str] | None:
    """The subjects that exist now, measured or not; None where absence says nothing (the
    account, the models: unknown is not gone). A subject no longer present (a stopped worker, a
    queue of a service switched off) ends its open firings: the process the memory belonged to
    is gone."""
    kind = catalog.METRICS[metric_name].subject
    if kind == catalog.QUEUE:
        return {name for name, _ in live_queues(graph)}
    if kind == catalog.WORKER:
        return {name for name, _ in live_workers(graph)}
    if kind == catalog.SYSTEM:
        return set(graph.get("dependencies") or {})
    return None


def subject_service(metric_name: str, subject: str, graph: Graph) -> str | None:
    """The service a subject belongs to (what a system.alert names), None for the system."""
    kind = catalog.METRICS[metric_name].subject
    if kind == catalog.QUEUE:
        return ((graph.get("queues") or {}).get(subject) or {}).get("service")
    if kind == catalog.WORKER:
        return ((graph.get("workers") or {}).get(subject) or {}).get("service")
    if kind == catalog.ACCOUNT:
        return Service.EXEC_RISK.value
    if kind == catalog.MODEL:
        return Service.AI.value
    return None
