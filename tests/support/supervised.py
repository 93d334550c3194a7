"""Real workers under a real supervisord, for the self-healing tests and benchmarks.

The programs are named as in deploy/supervisord.conf (worker-<queue>) and, as `make run` does when
self-healing is on, are not restarted by supervisord itself (autorestart=false): the analytics-os
service restarts them through supervisord's XML-RPC interface. Only the ops worker, where
self-healing runs, keeps supervisord's autorestart.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path

from tests.support.workers import ROOT, TEST_HEALTH_PORTS

_PROGRAM = """
[program:worker-{queue}]
command={python} -m celery -A qtweb worker -Q {queue} -n {queue}@sup --concurrency {concurrency}
    --prefetch-multiplier 1 -l INFO --without-mingle --without-gossip
environment=QT_SERVICE="{service}",HEALTH_PORT="{port}"
directory={root}
autostart=true
autorestart={autorestart}
startsecs=2
startretries=1
stopwaitsecs=10
stopasgroup=true
killasgroup=true
stdout_logfile={logdir}/worker-{queue}.log
redirect_stderr=true
"""


class Supervised:
    """supervisord with one program per queue, its socket in `workdir`."""

    def __init__(self, workdir: Path, env: dict, queues=("inference", "learning", "ops")):
        self.workdir, self.env, self.queues = workdir, env, queues
        self.socket = workdir / "supervisor.sock"
        self.proc: subprocess.Popen | None = None
        self._driver_stop = threading.Event()
        self._driver: threading.Thread | None = None

    def write_config(self) -> Path:
        from qtweb.queues import service_for_queue

        conf = self.workdir / "supervisord.conf"
        parts = [f"""[unix_http_server]
file={self.socket}
chmod=0700

[supervisord]
logfile={self.workdir}/supervisord.log
pidfile={self.workdir}/supervisord.pid
childlogdir={self.workdir}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
"""]
        for q in self.queues:
            parts.append(_PROGRAM.format(queue=q, python=sys.executable, service=service_for_queue(q).value,
                                         port=TEST_HEALTH_PORTS[q], root=ROOT, logdir=self.workdir,
                                         concurrency=2 if q == "ops" else 1,
                                         autorestart="true" if q == "ops" else "false"))
        conf.write_text("\n".join(parts))
        return conf

    def start(self) -> None:
        conf = self.write_config()
        env = {**self.env, "SUPERVISOR_SOCKET": str(self.socket), "PROCESS_MANAGER": "supervisor"}
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-n", "-c", str(conf)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"supervisord did not start; see {self.workdir}/supervisord.log")
            time.sleep(0.1)

    def rpc(self):
        from supervisor.xmlrpc import SupervisorTransport

        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
            None, None, f"unix://{self.socket}")).supervisor

    def info(self, queue: str) -> dict:
        return self.rpc().getProcessInfo(f"worker-{queue}")

    def pid(self, queue: str) -> int:
        return int(self.info(queue)["pid"])

    def drive_monitor(self, every: float = 2.0) -> None:
        """Send the health monitor's task to the ops worker as beat would (faster, so the tests
        measure the healing, not the schedule)."""
        from qtweb.celery import app

        def loop():
            while not self._driver_stop.wait(every):
                try:
                    app.send_task("analytics.health.evaluate", queue="ops", expires=every * 2)
                except Exception:
                    pass

        self._driver = threading.Thread(target=loop, daemon=True)
        self._driver.start()

    def stop(self) -> None:
        self._driver_stop.set()
        if self._driver is not None:
            self._driver.join(timeout=5)
        if self.proc is None or self.proc.poll() is not None:
            return
        import psutil

        try:
            ours = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            ours = []
        try:
            self.rpc().shutdown()
            self.proc.wait(timeout=40)
        except Exception:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # A frozen worker ignores supervisord's TERM; nothing this supervisord started may outlive it
        # (and nothing else is touched: other runs on the machine have their own workers).
        for p in ours:
            try:
                p.kill()
            except psutil.Error:
                pass

    def log_tail(self, queue: str, lines: int = 40) -> str:
        path = self.workdir / f"worker-{queue}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
