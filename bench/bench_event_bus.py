"""Event bus benchmark, all in one run so the ratios compare figures taken side by side.

(a) floor: Redis PING round trip (redis-py).
(b) floor: bare Celery round trip: `qtweb.rpc.execute("analytics-os-service", "ping", {})`
    sent to the ops worker and its result awaited with `.get()`. The task body is a near
    no-op (a dict with hostname, pid and time), so this is Celery's own send -> run -> result
    -> wake-up cost with the result backend the RPC uses.
(c) publish -> handled latency: `bus.publish(platform.probe)` in autocommit (on_commit fires
    inside publish), then BLPOP on `probe:<probe_id>` until the first probe subscriber's
    entry arrives (and, as a second figure, all three probe subscribers').
(d) sustained throughput: N events published back to back from this process, timed until
    every EventDelivery of them is DONE, for `market.bar` (one subscriber, analytics.observer
    on ops) and `platform.probe` (four subscribers on four queues).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.common import (
    BenchEnv,
    bench_trace_id,
    cpu_delta,
    cpu_seconds_by_group,
    db_sessions,
    progress,
    summarize,
    time_calls,
)

LATENCY_TARGET_RATIO = 3.0  # publish->handled p50 <= 3 x bare Celery p50
THROUGHPUT_TARGET_EPS = 500.0  # events/s with one worker per queue


# --- (a) and (b): the floors ---------------------------------------------------------------


def redis_ping(env: BenchEnv, n: int = 1000) -> dict:
    import redis

    r = redis.Redis.from_url(env.redis_url)
    try:
        return summarize(time_calls(r.ping, n, warmup=50))
    finally:
        r.close()


def celery_roundtrip(n: int = 500) -> dict:
    from qtweb.rpc.tasks import execute

    args = ("analytics-os-service", "ping", {})

    def once() -> None:
        res = execute.apply_async(args=args, queue="ops")
        reply = res.get(timeout=5)
        assert reply.get("ok"), reply
        res.forget()  # keep the result backend small; not timed separately, included in both (b) and RPC

    return summarize(time_calls(once, n, warmup=20))


# --- (c) publish -> handled ----------------------------------------------------------------


@contextmanager
def ops_deliveries_last():
    """Bench-side reorder: deliveries on the ops queue (the analytics.observer audit log) are
    created, hence sent, after the others instead of first (subscribers sort by name). Shows
    what sending latency-sensitive queues first would save; production code is untouched."""
    from qtweb.events import registry

    real = registry.subscribers_for

    def reordered(event_type):
        return tuple(sorted(real(event_type), key=lambda s: s.queue.value == "ops"))

    registry.subscribers_for = reordered
    try:
        yield
    finally:
        registry.subscribers_for = real


def publish_latency(env: BenchEnv, n: int = 300, warmup: int = 20, ops_last: bool = False) -> dict:
    if ops_last:
        with ops_deliveries_last():
            return publish_latency(env, n, warmup)
    import redis

    from qtweb.events import EventType
    from qtweb.events.bus import publish
    from qtweb.events.registry import subscribers_for

    probes = [s.name for s in subscribers_for(EventType.PLATFORM_PROBE.value) if s.name.startswith("probe.")]
    if not probes:
        raise RuntimeError("no probe subscribers: DJANGO_SETTINGS_MODULE must be qtweb.settings.test")
    from qtweb.events import bus

    r = redis.Redis.from_url(env.redis_url)
    trace_id = bench_trace_id("lat")
    call_s, first_s, all_s = [], [], []
    to_commit_s, to_probe_sent_s, sent_to_handled_s = [], [], []
    timeouts = 0
    # Timestamps of each send (bench-side wrapper, two perf_counter calls per send): splits
    # publish -> handled into "until commit", "until the first probe message is sent" and
    # "first probe message sent -> handled" (broker + worker, comparable to the Celery floor).
    sends: list[tuple[str, float, float]] = []
    real_send = bus.send_delivery

    def timed_send(delivery_id, subscriber, queue, wire):
        a = time.perf_counter()
        ok = real_send(delivery_id, subscriber, queue, wire)
        sends.append((subscriber, a, time.perf_counter()))
        return ok

    bus.send_delivery = timed_send
    try:
        for i in range(warmup + n):
            sends.clear()
            probe_id = f"{trace_id}-{i}"
            key = f"probe:{probe_id}"
            t0 = time.perf_counter()
            publish(EventType.PLATFORM_PROBE, {"probe_id": probe_id, "sent_at": datetime.now(UTC)},
                    trace_id=trace_id)
            t1 = time.perf_counter()
            got = r.blpop([key], timeout=10)
            t2 = time.perf_counter()
            rest = [r.blpop([key], timeout=10) for _ in probes[1:]]
            t3 = time.perf_counter()
            r.delete(key, *(f"{key}:count:{s}" for s in probes))
            if got is None or any(x is None for x in rest):
                timeouts += 1
                continue
            if i >= warmup:
                call_s.append(t1 - t0)
                first_s.append(t2 - t0)
                all_s.append(t3 - t0)
                first_probe_sent = min(end for sub, _, end in sends if sub in probes)
                to_commit_s.append(sends[0][1] - t0)
                to_probe_sent_s.append(first_probe_sent - t0)
                sent_to_handled_s.append(t2 - first_probe_sent)
    finally:
        bus.send_delivery = real_send
        r.close()
    return {
        "publish_call": summarize(call_s),
        "first_handled": summarize(first_s),
        "all_probes_handled": summarize(all_s),
        "until_commit": summarize(to_commit_s),
        "until_first_probe_sent": summarize(to_probe_sent_s),
        "first_probe_sent_to_handled": summarize(sent_to_handled_s),
        "timeouts": timeouts,
        "probe_subscribers": len(probes),
    }


# --- (d) throughput ------------------------------------------------------------------------


def _market_bar(i: int) -> dict:
    base = Decimal("50000") + Decimal(i % 1000)
    return {
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "open_time": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        "open": base,
        "high": base + Decimal("12.5"),
        "low": base - Decimal("7.25"),
        "close": base + Decimal("3.5"),
        "volume": Decimal("1.25"),
    }


def _probe(probe_id: str):
    def make(i: int) -> dict:
        return {"probe_id": probe_id, "sent_at": datetime.now(UTC)}

    return make


def throughput(env: BenchEnv, ws, event_type: str, n: int = 3000, timeout: float = 240.0,
               profile_dir: Path | None = None, label: str = "", batch: int = 1) -> dict:
    """Publish n events back to back, then wait until all their deliveries are DONE.

    batch=1: one `publish()` per event (one transaction each); batch>1: `publish_many()` with
    that many events per transaction (e.g. one bar per symbol).

    Elapsed time runs from the first publish to the last delivery's processed_at (written by
    the worker with this machine's clock), so the polling interval does not inflate it.
    """
    import redis
    from django.db.models import Count, Max, Min

    from qtweb.events import EventType, bus
    from qtweb.events.models import DeliveryStatus, EventDelivery
    from qtweb.events.registry import subscribers_for

    if batch > 1 and not hasattr(bus, "publish_many"):
        raise RuntimeError("this code base has no qtweb.events.bus.publish_many")
    etype = EventType(event_type)
    subs = subscribers_for(etype.value)
    trace_id = bench_trace_id("tp")
    probe_id = trace_id  # one Redis list for the whole run, removed at the end
    make = _market_bar if etype is EventType.MARKET_BAR else _probe(probe_id)
    expected = n * len(subs)
    payloads = [make(i) for i in range(n)]  # built before the clock starts
    worker_pids = {node: p.pid for node, p in ws.procs.items()}

    recorder = None
    if profile_dir is not None:
        import psutil

        from bench.pyspy import Recorder

        targets = {f"{label}-publisher": os.getpid()}
        for node, pid in worker_pids.items():
            kids = psutil.Process(pid).children()
            for j, child in enumerate(kids):
                targets[f"{label}-{node.split('@')[0]}-child{j}"] = child.pid
        recorder = Recorder(profile_dir, targets)
        recorder.__enter__()

    counts: dict = {}
    qs = EventDelivery.objects.filter(event__trace_id=trace_id)
    sessions0 = db_sessions()
    cpu0 = cpu_seconds_by_group(worker_pids)
    wall0 = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        if batch <= 1:
            for i in range(n):
                bus.publish(etype, payloads[i], trace_id=trace_id)
                if i and i % 1000 == 0:
                    progress(f"  {etype.value}: published {i}/{n}")
        else:
            for i in range(0, n, batch):
                bus.publish_many([(etype, p) for p in payloads[i:i + batch]], trace_id=trace_id)
        t_pub = time.perf_counter() - t0
        progress(f"  {etype.value}: published {n} in {t_pub:.1f}s ({n / t_pub:.0f}/s); waiting for {expected} "
                 "deliveries")

        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while True:
            counts = dict(qs.values_list("status").annotate(c=Count("id")))
            finished = counts.get(DeliveryStatus.DONE, 0) + counts.get(DeliveryStatus.FAILED, 0)
            if finished >= expected or time.monotonic() > deadline:
                break
            if time.monotonic() - last_report > 5:
                progress(f"  {etype.value}: {finished}/{expected} deliveries finished")
                last_report = time.monotonic()
            time.sleep(0.25)
    finally:
        t_wait = time.perf_counter() - t0
        cpu1 = cpu_seconds_by_group(worker_pids)
        if recorder is not None:
            recorder.__exit__(None, None, None)

    time.sleep(1.5)  # PostgreSQL flushes a closed session's statistics within a second or so
    sessions1 = db_sessions()
    agg = qs.filter(status=DeliveryStatus.DONE).aggregate(last=Max("processed_at"))
    elapsed = (agg["last"] - wall0).total_seconds() if agg["last"] else t_wait
    per_queue = {}
    for row in qs.filter(status=DeliveryStatus.DONE).values("queue").annotate(
        c=Count("id"), first=Min("processed_at"), last=Max("processed_at")
    ):
        span = (row["last"] - wall0).total_seconds()
        per_queue[row["queue"]] = {"deliveries": row["c"], "finished_after_s": span,
                                   "deliveries_per_s": row["c"] / span if span > 0 else float("nan")}
    done = counts.get(DeliveryStatus.DONE, 0)
    failed = counts.get(DeliveryStatus.FAILED, 0)
    if etype is EventType.PLATFORM_PROBE:
        r = redis.Redis.from_url(env.redis_url)
        r.delete(f"probe:{probe_id}", *(f"probe:{probe_id}:count:{s.name}" for s in subs))
        r.close()
    cpu = cpu_delta(cpu0, cpu1)
    return {
        "event_type": etype.value,
        "batch": batch,
        "subscribers": len(subs),
        "queues": sorted({s.queue.value for s in subs}),
        "events": n,
        "expected_deliveries": expected,
        "done": done,
        "failed": failed,
        "complete": done + failed >= expected,
        "publish_seconds": t_pub,
        "publish_events_per_s": n / t_pub,
        "elapsed_seconds": elapsed,
        "events_per_s": (done / len(subs)) / elapsed if elapsed > 0 else float("nan"),
        "deliveries_per_s": done / elapsed if elapsed > 0 else float("nan"),
        "per_queue": per_queue,
        "db_sessions_opened": (sessions1 - sessions0) if None not in (sessions0, sessions1) else None,
        "cpu_seconds": cpu,
        "cpu_window_seconds": t_wait,
        "profiles": {k: str(v) for k, v in (recorder.files.items() if recorder else [])},
    }


def run_floors_and_latency(env: BenchEnv, n_ping: int = 1000, n_celery: int = 500, n_latency: int = 300) -> dict:
    progress(f"event bus (a): Redis PING x{n_ping}")
    ping = redis_ping(env, n_ping)
    progress(f"event bus (b): bare Celery round trip (rpc execute ping on ops) x{n_celery}")
    celery_rt = celery_roundtrip(n_celery)
    progress(f"event bus (c): publish -> handled, platform.probe x{n_latency} (sequential)")
    lat = publish_latency(env, n_latency)
    ratio = lat["first_handled"]["p50"] / celery_rt["p50"]
    return {
        "redis_ping": ping,
        "celery_roundtrip": celery_rt,
        "publish_latency": lat,
        "ratio_first_handled_p50_to_celery_p50": ratio,
        "ratio_first_handled_p99_to_celery_p99": lat["first_handled"]["p99"] / celery_rt["p99"],
        "latency_target_met": ratio <= LATENCY_TARGET_RATIO,
    }
