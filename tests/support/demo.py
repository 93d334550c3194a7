"""A fresh demo as a new user starts it: a clone of the committed HEAD, `make run` with no
DATABASE_URL/REDIS_URL (SQLite and the embedded Redis), its SQLite database read while it runs.

Used by tests/system/ and bench/bench_demo_first_order.py. The clone reuses this checkout's
.venv (installing is not what is measured). Ports 8000-8003 and 6390 must be free.
"""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEALTH_PORTS = (8000, 8001, 8002, 8003)
EMBEDDED_REDIS_PORT = 6390

FIRST_TRADE_SIGNAL = ("SELECT 1 FROM qtweb_event WHERE type='signal.generated' "
                      "AND payload NOT LIKE '%\"action\": \"HOLD\"%' LIMIT 1")
FIRST_AI_ORDER = ("SELECT 1 FROM trading_order o JOIN trading_executionintent i ON o.intent_id = i.id "
                  "WHERE i.source = 'signal' LIMIT 1")
FIRST_POSITION_CLOSED = "SELECT 1 FROM qtweb_event WHERE type='position.closed' LIMIT 1"
RL_EXPERIENCE = "SELECT 1 FROM ai_rlexperience LIMIT 1"
OUTCOME_JOINED_TO_POSITION = "SELECT 1 FROM analytics_predictionoutcome WHERE position_id != '' LIMIT 1"
OUTCOME_RESOLVED = "SELECT 1 FROM analytics_predictionoutcome WHERE went_up IS NOT NULL LIMIT 1"
DRIFT_CHECKED = "SELECT 1 FROM analytics_driftcheck LIMIT 1"


def ports_in_use() -> list[int]:
    busy = []
    for port in (*HEALTH_PORTS, EMBEDDED_REDIS_PORT):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def healthy() -> bool:
    for port in HEALTH_PORTS:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status != 200:
                    return False
        except OSError:
            return False
    return True


class DemoRun:
    """`with DemoRun(speed=60) as demo: demo.wait(...)`: make run in a fresh clone, make stop after."""

    def __init__(self, *, speed: float = 60.0):
        self.speed = speed
        self.work = Path(tempfile.mkdtemp(prefix="qt-demo-"))
        self.clone = self.work / "qt"
        self.db = self.clone / "var" / "quantum_trader.sqlite3"
        self.marks: dict[str, float] = {}
        self.t0 = 0.0

    def __enter__(self) -> DemoRun:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(self.clone)], check=True)
        (self.clone / ".venv").symlink_to(ROOT / ".venv")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "QT_TEST_PORT_BASE")}
        self.env["SIM_SPEED_FACTOR"] = str(self.speed)
        self.log = open(self.work / "make-run.log", "w")  # noqa: SIM115 - closed in __exit__
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["make", "run"], cwd=self.clone, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["make", "stop"], cwd=self.clone, env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        self.log.close()
        if exc[0] is None:
            shutil.rmtree(self.work, ignore_errors=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def query(self, sql: str):
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
            try:
                return con.execute(sql).fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            return None

    def wait(self, name: str, check, timeout: float, poll: float = 2.0) -> float | None:
        """Poll `check()` (a callable, or SQL that must return a row) until true; record and return
        the seconds since `make run` started, or None after `timeout` seconds (or if make run died)."""
        probe = (lambda: self.query(check)) if isinstance(check, str) else check
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if probe():
                self.marks[name] = self.elapsed()
                return self.marks[name]
            time.sleep(poll)
        return None

    def log_tail(self, n: int = 40) -> str:
        lines = (self.work / "make-run.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])
