"""The task that runs an RPC command on the service's queue (sent by qtweb.rpc.client.call)."""
from __future__ import annotations

from qtweb.queues import Queue, Service
from qtweb.rpc.registry import lookup
from qtweb.taskqueue import queue_task


# Declared on ops, the queue a command without one would take; rpc.client.call always names the
# service's RPC queue (SERVICE_RPC_QUEUE), execution included, with acks_late left off there too.
@queue_task(Queue.OPS, name="qtweb.rpc.execute", ignore_result=False, acks_late=False)
def execute(service: str, command: str, params: dict) -> dict:
    """Returns {"ok": True, "result": ...} or {"ok": False, "error": kind, "type": ..., "message": ...}.
    Errors travel as data, so the caller gets a typed RpcError, never a pickled exception."""
    fn = lookup(Service(service), command)
    if fn is None:
        return {"ok": False, "error": "unknown_command", "type": "LookupError",
                "message": f"{service} has no command {command!r}"}
    try:
        return {"ok": True, "result": fn(**params)}
    except TypeError as exc:
        return {"ok": False, "error": "bad_params", "type": "TypeError", "message": str(exc)}
    except ValueError as exc:
        return {"ok": False, "error": "bad_params", "type": type(exc).__name__, "message": str(exc)}
    except Exception as exc:
        return {"ok": False, "error": "remote", "type": type(exc).__name__, "message": str(exc)[:2000]}
