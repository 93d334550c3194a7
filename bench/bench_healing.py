"""Self-healing: how long from a worker's death (SIGKILL) or freeze (SIGSTOP) to the alert, to its
restart, and to its next heartbeat.

    .venv/bin/python -m bench.bench_healing [--runs 10] [--every 5]

Real workers (inference, learning, ops) under a real supervisord, as `make run` starts them
(worker programs without supervisord's autorestart: self-healing restarts them through the XML-RPC
interface), on their own database (qt_bench_healing) and Redis db 12. The health monitor's task is
sent to the ops worker every --every seconds (beat's production period is 5 s). The restart
cooldown is 5 s and the loop guard 1000, so that ten runs in a row measure the healing, not the
guards (production: 60 s, 3 per 15 minutes).

Per run: the time from the signal to the first `system.alert` naming the worker, to self-healing's
restart (the supervisord program running with a new pid), and to the new process's first
heartbeat. The baseline of the same run is the time a worker takes to start and beat when
supervisord starts it on request (no failure, no detection): what any restart costs at least.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import machine_info, md_table, progress, setup_standalone

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/qt_bench_healing"
REDIS_URL = "redis://127.0.0.1:6379/12"


def _beat_with_new_pid(old_pid: int, since: datetime) -> bool:
    from qtweb.health.models import WorkerHeartbeat

    row = WorkerHeartbeat.objects.filter(worker="inference@sup").first()
    return row is not None and row.pid != old_pid and row.last_seen > since


def _alert_after(since: datetime):
    from qtweb.events.models import Event

    e = (Event.objects.filter(type="system.alert", timestamp__gte=since, payload__message__icontains="inference")
         .order_by("timestamp").first())
    return None if e is None else (e.timestamp - since).total_seconds()


def _wait(pred, timeout: float, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    return None


def one_run(sup, sig: int) -> dict:
    old = sup.pid("inference")
    t0 = datetime.now(UTC)
    os.kill(old, sig)
    try:
        restarted = _wait(lambda: sup.pid("inference") not in (0, old) and datetime.now(UTC), timeout=120)
        beat = _wait(lambda: _beat_with_new_pid(old, t0) and datetime.now(UTC), timeout=120)
        alert = _wait(lambda: _alert_after(t0), timeout=30)
    finally:
        if sig == signal.SIGSTOP:
            try:
                os.kill(old, signal.SIGCONT)
            except ProcessLookupError:
                pass
    if not (restarted and beat and alert is not None):
        raise RuntimeError(f"run failed: restarted={restarted} beat={beat} alert={alert}; see {sup.workdir}")
    return {"alert": alert, "restart": (restarted - t0).total_seconds(), "beat": (beat - t0).total_seconds()}


def baseline(sup) -> float:
    """Stop and start the inference program on request: start-up to first heartbeat."""
    rpc = sup.rpc()
    old = sup.pid("inference")
    rpc.stopProcess("worker-inference", True)
    t0 = datetime.now(UTC)
    rpc.startProcess("worker-inference", False)
    beat = _wait(lambda: _beat_with_new_pid(old, t0) and datetime.now(UTC), timeout=120)
    return (beat - t0).total_seconds()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_healing", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between monitor passes (beat: 5)")
    args = ap.parse_args(argv)

    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["QT_TEST_PORT_BASE"] = "18320"  # health ports apart from make test's workers
    setup_standalone(DATABASE_URL, REDIS_URL)
    import redis
    from django.conf import settings

    from analytics.models import AlertRule, HealingAction
    from qtweb.events.models import Event, EventDelivery
    from qtweb.health.models import WorkerHeartbeat
    from tests.support.supervised import Supervised

    for model in (HealingAction, AlertRule, EventDelivery, Event, WorkerHeartbeat):
        model.objects.all().delete()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DJANGO_SETTINGS_MODULE="qtweb.settings.test", DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL,
               PYTHONUNBUFFERED="1", EXEC_RISK_SERVICE_ENABLED="false", QT_TEST_PORT_BASE="18320",
               SELF_HEALING_RESTART_COOLDOWN_SECONDS="5", SELF_HEALING_MAX_RESTARTS="1000")
    workdir = Path(tempfile.mkdtemp(prefix="qt-bench-healing-"))
    sup = Supervised(workdir, env)
    progress("starting supervisord and the workers")
    sup.start()
    results: dict[str, list[dict]] = {"SIGKILL (dead)": [], "SIGSTOP (frozen)": []}
    try:
        if not _wait(lambda: WorkerHeartbeat.objects.filter(worker="inference@sup").exists()
                     and WorkerHeartbeat.objects.filter(worker="ops@sup").exists(), timeout=120, poll=0.5):
            raise RuntimeError(f"workers did not beat; see {workdir}")
        sup.drive_monitor(every=args.every)
        base = [baseline(sup) for _ in range(3)]
        progress(f"baseline start-up to first heartbeat: {statistics.median(base):.1f}s")
        for name, sig in (("SIGKILL (dead)", signal.SIGKILL), ("SIGSTOP (frozen)", signal.SIGSTOP)):
            for i in range(args.runs):
                time.sleep(6)  # past the restart cooldown
                r = one_run(sup, sig)
                results[name].append(r)
                progress(f"{name} run {i + 1}/{args.runs}: alert {r['alert']:.1f}s, restart {r['restart']:.1f}s, "
                         f"beat {r['beat']:.1f}s")
    finally:
        sup.stop()

    rows = []
    for name, runs in results.items():
        for key, label in (("alert", "to the alert"), ("restart", "to the restart"), ("beat", "to the next heartbeat")):
            vals = [r[key] for r in runs]
            rows.append([name, label, f"{statistics.median(vals):.1f}", f"{max(vals):.1f}",
                         f"{statistics.median(vals) / statistics.median(base):.2f}"])
    print()
    print(md_table(["failure", "time", f"p50 s ({args.runs} runs)", "max s", "p50 / baseline"], rows))
    print(f"\nbaseline (supervisord start on request -> first heartbeat, 3 runs): p50 "
          f"{statistics.median(base):.1f}s, max {max(base):.1f}s; monitor every {args.every:g}s")
    info = machine_info()
    print(f"machine: {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
