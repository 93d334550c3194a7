"""Prometheus metrics of every process, and the /metrics exposition.

Worker services run Celery's prefork pool, so counters are incremented in child processes:
with PROMETHEUS_MULTIPROC_DIR set (make run and docker-compose set one directory per
service) prometheus_client's multiprocess mode sums them; without it (tests, one process)
the default registry is used.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

PROCESS_STARTED_AT = time.time()

EVENTS_PUBLISHED = Counter("events_published_total", "Events committed to the outbox", ["type"])
EVENTS_CONSUMED = Counter(
    "events_consumed_total",
    "Event deliveries finished by a subscriber",
    ["type", "subscriber", "outcome"],  # outcome: handled, duplicate, retried, failed
)
EVENTS_DISPATCH_ERRORS = Counter(
    "events_dispatch_errors_total", "Dispatches the broker refused (the outbox re-dispatches them)", ["queue"]
)
EVENTS_REDISPATCHED = Counter("events_redispatched_total", "Deliveries re-sent from the outbox", ["queue", "reason"])
RPC_CALLS = Counter("rpc_calls_total", "RPC calls by outcome", ["service", "command", "status"])
RPC_LATENCY = Histogram(
    "rpc_call_seconds",
    "RPC round trip as seen by the caller (successful calls)",
    ["service", "command"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
TASK_LATENCY = Histogram(
    "task_duration_seconds",
    "Celery task run time",
    ["task", "queue"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
HEARTBEATS_SENT = Counter("heartbeats_sent_total", "service.heartbeat events published", ["service", "queue"])


class PlatformCollector:
    """Values computed at scrape time: uptime of the serving process and queue depths."""

    def __init__(self, service: str):
        self.service = service

    def collect(self):
        up = GaugeMetricFamily(
            "service_uptime_seconds", "Seconds since this service process started", labels=["service"]
        )
        up.add_metric([self.service], time.time() - PROCESS_STARTED_AT)
        yield up
        depth = GaugeMetricFamily("queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        try:
            from qtweb.health.status import queue_depths

            for queue, n in queue_depths().items():
                depth.add_metric([queue], n)
        except Exception:  # Redis down: /health says so; metrics still render the rest
            pass
        yield depth
        # The outbox backlog, from the database: what is still owed to subscribers, and what
        # failed for good and waits for an operator.
        backlog = GaugeMetricFamily(
            "outbox_deliveries", "Event deliveries not DONE, by queue and status", labels=["queue", "status"]
        )
        try:
            from django.db.models import Count

            from qtweb.events.models import DeliveryStatus, EventDelivery

            rows = (
                EventDelivery.objects.exclude(status=DeliveryStatus.DONE)
                .values("queue", "status")
                .annotate(n=Count("id"))
            )
            for row in rows:
                backlog.add_metric([row["queue"], row["status"]], row["n"])
        except Exception:
            pass
        yield backlog


def render(service: str) -> tuple[bytes, str]:
    """The exposition text for this process (and its siblings in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        for collector in list(REGISTRY._collector_to_names):  # the process's own metrics
            registry.register(collector)
    registry.register(PlatformCollector(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST
