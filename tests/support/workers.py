"""Real Celery workers as subprocesses, for integration tests and benchmarks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ("inference", "execution", "learning", "ops")
# Health ports for test workers: far from make run's 8000-8003 so both can run at once.
# QT_TEST_PORT_BASE moves them (two suites on one machine).
PORT_BASE = int(os.environ.get("QT_TEST_PORT_BASE", "18100"))
TEST_HEALTH_PORTS = {q: PORT_BASE + i + 1 for i, q in enumerate(QUEUES)}


class WorkerSet:
    """Real `celery worker` processes, one per queue, started and stopped by the tests."""

    def __init__(self, db_url: str, redis_url: str, log_dir: Path, extra_env: dict | None = None):
        self.db_url, self.redis_url, self.log_dir = db_url, redis_url, log_dir
        self.extra_env = extra_env or {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.prom_dir = Path(tempfile.mkdtemp(prefix="qt-prom-"))

    def env(self, queue: str) -> dict:
        from qtweb.queues import service_for_queue

        service = service_for_queue(queue).value
        prom = self.prom_dir / service
        prom.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(
            DJANGO_SETTINGS_MODULE="qtweb.settings.test",
            DATABASE_URL=self.db_url,
            REDIS_URL=self.redis_url,
            HEALTH_PORT=str(TEST_HEALTH_PORTS[queue]),
            QT_SERVICE=service,
            PROMETHEUS_MULTIPROC_DIR=str(prom),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, queue: str, name: str | None = None, concurrency: int = 1) -> subprocess.Popen:
        node = name or f"{queue}@test"
        log = open(self.log_dir / f"worker-{node.replace('@', '-')}.log", "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "qtweb", "worker", "-Q", queue, "-n", node,
             "--concurrency", str(concurrency), "--prefetch-multiplier", "1", "-l", "INFO", "--without-mingle",
             "--without-gossip"],
            cwd=ROOT, env=self.env(queue), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[node] = proc
        self.started_at[node] = time.monotonic()
        return proc

    def stop(self, node: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.procs.pop(node, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for node in list(self.procs):
            self.stop(node)

    def restart(self, queue: str) -> None:
        self.stop(f"{queue}@test")
        self.start(queue)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker answers its queue's RPC ping."""
        from qtweb import rpc

        deadline = time.monotonic() + timeout
        pending = {"ai", "exec-risk", "analytics"}
        while pending and time.monotonic() < deadline:
            for svc in list(pending):
                try:
                    rpc.call(svc, "ping", timeout=1, retries=0)
                    pending.discard(svc)
                except rpc.RpcError:
                    pass
            for node, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"worker {node} exited with {p.returncode}; see {self.log_dir}")
        if pending:
            raise RuntimeError(f"workers not answering ping after {timeout}s: {pending}; logs in {self.log_dir}")
