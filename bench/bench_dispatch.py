"""Dispatch micro-benchmark: what the delivery messages of one event cost the publisher, and
what publisher-side variants cost. Evidence for production changes, not changes themselves.

Messages go to a queue no worker consumes (`bench-sink`), deleted afterwards. Each round
sends the four messages one `platform.probe` event needs, with the real envelope:

- current: `bus.send_delivery()`, as publish() does (with a short `argsrepr` since 522e5c0);
- no argsrepr: `deliver_event.apply_async()` as before 522e5c0, Celery `saferepr()`s the
  whole envelope into the message's argsrepr header;
- one producer per event: short argsrepr and the four sends through one
  `producer_or_acquire()` producer instead of one pool acquire per send.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from bench.common import BenchEnv, progress, summarize

SINK = "bench-sink"


def run(env: BenchEnv, rounds: int = 1000, warmup: int = 50) -> dict:
    import redis
    from celery import current_app

    from qtweb import tracing
    from qtweb.events import bus
    from qtweb.events.schemas import EventType, build_envelope
    from qtweb.events.tasks import deliver_event

    env_ = build_envelope(EventType.PLATFORM_PROBE, {"probe_id": "bench-dispatch", "sent_at": datetime.now(UTC)},
                          trace_id="bench-dispatch-0000", source="web")
    wire = env_.model_dump(mode="json")
    headers = {tracing.TRACE_HEADER: wire["trace_id"]}
    subs = ["analytics.observer", "probe.execution", "probe.inference", "probe.learning"]

    def current():
        for i, s in enumerate(subs):
            bus.send_delivery(i, s, SINK, wire)

    def no_argsrepr():
        for i, s in enumerate(subs):
            deliver_event.apply_async(args=(i, s, wire), queue=SINK, headers=dict(headers))

    def one_producer():
        with current_app.producer_or_acquire() as p:
            for i, s in enumerate(subs):
                deliver_event.apply_async(args=(i, s, wire), queue=SINK, headers=dict(headers), producer=p,
                                          argsrepr=f"({i}, {s!r}, <envelope>)", kwargsrepr="{}")

    variants = {
        "current: `bus.send_delivery` x4": current,
        "no argsrepr (as before 522e5c0)": no_argsrepr,
        "short argsrepr + one producer per event": one_producer,
    }
    r = redis.Redis.from_url(env.redis_url)
    out = {}
    try:
        for name, fn in variants.items():
            progress(f"dispatch: {name} x{rounds} events (4 messages each)")
            for _ in range(warmup):
                fn()
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            r.delete(SINK)
            out[name] = summarize(samples)
    finally:
        r.delete(SINK)
        r.close()
    return out
