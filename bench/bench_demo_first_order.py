"""A fresh demo, as a new user starts it, to its first AI-driven order.

    .venv/bin/python -m bench.bench_demo_first_order [--speed 60] [--timeout 900]

Clones the committed HEAD into a temporary folder, runs `make run` there with
SIM_SPEED_FACTOR=<speed> and no DATABASE_URL/REDIS_URL (SQLite and the embedded Redis, as on a
fresh machine; the clone reuses this checkout's .venv, so installing is not timed), and polls
its database every 2 s. Prints, from the start of `make run`: the workers up (every worker's
/health answers), the first signal.generated with an action other than HOLD, and the first
order of an intent whose source is an AI signal; then `make stop`. Ports 8000-8003 and 6390
must be free (nothing else `make run`-like running).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEALTH_PORTS = (8000, 8001, 8002, 8003)


def _healthy() -> bool:
    for port in HEALTH_PORTS:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status != 200:
                    return False
        except OSError:
            return False
    return True


def _query(db: Path, sql: str):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qt-demo-bench-"))
    clone = work / "qt"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["SIM_SPEED_FACTOR"] = str(args.speed)
    log = open(work / "make-run.log", "w")  # noqa: SIM115 - the child writes it until make stop; closed below
    t0 = time.monotonic()
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    db = clone / "var" / "quantum_trader.sqlite3"
    marks: dict[str, float] = {}
    try:
        while time.monotonic() - t0 < args.timeout and proc.poll() is None:
            now = time.monotonic() - t0
            if "workers_up" not in marks and _healthy():
                marks["workers_up"] = now
                print(f"[{now:6.0f}s] every /health answers", file=sys.stderr)
            if "first_trade_signal" not in marks and _query(
                    db, "SELECT 1 FROM qtweb_event WHERE type='signal.generated' "
                        "AND payload NOT LIKE '%\"action\": \"HOLD\"%' LIMIT 1"):
                marks["first_trade_signal"] = now
                print(f"[{now:6.0f}s] first BUY/SELL signal", file=sys.stderr)
            if _query(db, "SELECT 1 FROM trading_order o JOIN trading_executionintent i ON o.intent_id = i.id "
                          "WHERE i.source = 'signal' LIMIT 1"):
                marks["first_ai_order"] = now
                print(f"[{now:6.0f}s] first AI-driven order", file=sys.stderr)
                break
            time.sleep(2)
    finally:
        subprocess.run(["make", "stop"], cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
    print("| from `make run` start | seconds |")
    print("| --- | --- |")
    for key in ("workers_up", "first_trade_signal", "first_ai_order"):
        print(f"| {key.replace('_', ' ')} | {marks[key]:.0f} |" if key in marks else f"| {key.replace('_', ' ')} | "
              f"not within {args.timeout:.0f} s |")
    if "first_ai_order" in marks and "workers_up" in marks:
        print(f"\nworkers up -> first AI-driven order: {marks['first_ai_order'] - marks['workers_up']:.0f} s "
              f"(speed {args.speed:g})")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if "first_ai_order" in marks else 1


if __name__ == "__main__":
    raise SystemExit(main())
