"""The process manager self-healing acts through.

Under `make run` that is supervisord, reached over its XML-RPC interface on the unix socket
(deploy/supervisord.conf): it tells which worker programs run, with which pid since when, and
restarts them. Under docker-compose there is none to call: a worker's healthcheck fails when it
stops beating and Docker's restart policy acts (docs/OPERATIONS.md); self-healing then records what
it saw and leaves the restart to Docker.

Program names follow deploy/supervisord.conf: the worker of queue `q` is `worker-q`.
"""
from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import dataclass

from django.conf import settings

from qtweb.logging import get_logger

log = get_logger(__name__)

# supervisord's process states (supervisor.states.ProcessStates) that mean "not running".
DOWN_STATES = ("STOPPED", "EXITED", "FATAL", "BACKOFF", "UNKNOWN")


def program_for_queue(queue: str) -> str:
    return f"worker-{queue}"


def queue_for_program(program: str) -> str | None:
    return program.removeprefix("worker-") if program.startswith("worker-") else None


class ProcessManagerError(RuntimeError):
    """The process manager could not be reached or refused; the message says which and why."""


@dataclass(frozen=True)
class ProcessInfo:
    program: str
    state: str  # RUNNING, STARTING, STOPPED, EXITED, BACKOFF, FATAL, STOPPING, UNKNOWN
    pid: int
    started_at: float  # epoch seconds (0 when never started)
    exit_status: int
    description: str

    def as_dict(self) -> dict:
        return {"state": self.state, "pid": self.pid, "started_at": self.started_at,
                "exit_status": self.exit_status, "description": self.description}


class NoProcessManager:
    """docker-compose (or anything else that restarts workers itself): nothing to call."""

    name = "none"

    def processes(self) -> dict[str, ProcessInfo]:
        return {}

    def restart(self, program: str) -> str:
        raise ProcessManagerError(f"PROCESS_MANAGER=none: {program} is left to the container's healthcheck and "
                                  f"restart policy")

    def stop(self, program: str) -> str:
        raise ProcessManagerError(f"PROCESS_MANAGER=none: cannot stop {program}")


class SupervisorManager:
    """supervisord over XML-RPC on its unix socket."""

    name = "supervisor"

    def __init__(self, socket_path: str, timeout: float = 10.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def _proxy(self):
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        transport.timeout = self.timeout
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _call(self, method: str, *args):
        try:
            return getattr(self._proxy().supervisor, method)(*args)
        except xmlrpc.client.Fault as exc:
            raise ProcessManagerError(f"supervisord refused {method}{args}: {exc.faultString}") from None
        except OSError as exc:
            raise ProcessManagerError(f"supervisord unreachable on {self.socket_path}: {exc}") from None

    def processes(self) -> dict[str, ProcessInfo]:
        return {p["name"]: ProcessInfo(p["name"], p["statename"], int(p["pid"]), float(p["start"]),
                                       int(p["exitstatus"]), p["description"])
                for p in self._call("getAllProcessInfo")}

    def info(self, program: str) -> ProcessInfo:
        p = self._call("getProcessInfo", program)
        return ProcessInfo(p["name"], p["statename"], int(p["pid"]), float(p["start"]), int(p["exitstatus"]),
                           p["description"])

    def restart(self, program: str) -> str:
        """Kill and start again. A dead or frozen worker cannot shut down cleanly (a SIGSTOPped one
        would hold a TERM until stopwaitsecs runs out), so it gets SIGKILL: its pool processes die
        with it (Celery sets PDEATHSIG), and every execution task is acks_late and idempotent, so
        an interrupted order is resumed, not lost or doubled."""
        before = self.info(program)
        if before.state in ("RUNNING", "STARTING"):
            self._call("signalProcess", program, "KILL")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                now = self.info(program)
                if now.pid != before.pid or now.state not in ("RUNNING", "STARTING"):
                    break
                time.sleep(0.1)
        now = self.info(program)
        if now.state in DOWN_STATES or now.state == "STOPPING":
            try:
                self._call("startProcess", program, False)
            except ProcessManagerError as exc:
                if "ALREADY_STARTED" not in str(exc):
                    raise
        after = self.info(program)
        was = f"killed pid {before.pid}" if before.state in ("RUNNING", "STARTING") else f"was {before.state}"
        return f"{was}; now {after.state} pid {after.pid}"

    def stop(self, program: str) -> str:
        before = self.info(program)
        if before.state in ("RUNNING", "STARTING"):
            self._call("signalProcess", program, "KILL")  # a flapping or frozen worker: no grace
        try:
            self._call("stopProcess", program, True)
        except ProcessManagerError as exc:
            if "NOT_RUNNING" not in str(exc):
                raise
        return f"stopped (was {before.state} pid {before.pid})"


def manager():
    if settings.PROCESS_MANAGER == "supervisor":
        return SupervisorManager(settings.SUPERVISOR_SOCKET)
    return NoProcessManager()


def processes_or_error() -> tuple[dict[str, dict], str]:
    """The process manager's view for the health graph: ({program: info}, error or "")."""
    pm = manager()
    try:
        return {name: info.as_dict() for name, info in pm.processes().items()}, ""
    except ProcessManagerError as exc:
        return {}, str(exc)
