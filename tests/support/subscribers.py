"""Probe subscribers on three queues. Each records, in Redis, what it saw: the trace id in its
own context (from the Celery header) and in the envelope, and which worker ran it. A handler
runs only when its delivery is claimed, so the counters count real handling, never duplicates.

`payload.note` steers them: "fail:<subscriber>" makes that subscriber raise every time;
"sleep:<seconds>" makes each handler mark itself started, then sleep before recording.
"""
from __future__ import annotations

import json

import redis
from django.conf import settings

from qtweb import tracing
from qtweb.events import EventEnvelope, EventType, subscriber
from qtweb.queues import Queue

_client = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL)
    return _client


class ProbeFailure(RuntimeError):
    pass


def _record(name: str, event: EventEnvelope) -> None:
    data = event.data()
    if data.note == f"fail:{name}":
        raise ProbeFailure(f"{name} told to fail")
    if data.note.startswith("sleep:"):
        import os
        import time

        client().rpush(f"probe:{data.probe_id}:started:{name}", os.getpid())
        time.sleep(float(data.note.split(":", 1)[1]))
    from celery import current_task

    entry = {
        "subscriber": name,
        "event_id": str(event.event_id),
        "envelope_trace_id": event.trace_id,
        "context_trace_id": tracing.current_trace_id(),
        "worker": getattr(current_task.request, "hostname", None) if current_task else None,
    }
    pipe = client().pipeline()
    pipe.rpush(f"probe:{data.probe_id}", json.dumps(entry))
    pipe.incr(f"probe:{data.probe_id}:count:{name}")
    pipe.execute()


@subscriber(EventType.PLATFORM_PROBE, queue=Queue.INFERENCE, name="probe.inference")
def on_inference(event: EventEnvelope) -> None:
    _record("probe.inference", event)


@subscriber(EventType.PLATFORM_PROBE, queue=Queue.LEARNING, name="probe.learning")
def on_learning(event: EventEnvelope) -> None:
    _record("probe.learning", event)


@subscriber(EventType.PLATFORM_PROBE, queue=Queue.EXECUTION, name="probe.execution")
def on_execution(event: EventEnvelope) -> None:
    _record("probe.execution", event)
