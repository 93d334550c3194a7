"""qtweb.rpc.call: request/response to a service over Celery, with timeout and retries."""
from __future__ import annotations

import json
import time

from celery import current_task
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from qtweb import metrics
from qtweb.logging import get_logger
from qtweb.queues import SERVICE_RPC_QUEUE, Service, resolve_service
from qtweb.rpc import errors
from qtweb.rpc.registry import lookup

log = get_logger(__name__)

# First pause between tries; doubles each time (0.1, 0.2, 0.4 ... s).
BACKOFF_BASE_SECONDS = 0.1


def call(service: str, command: str, params: dict | None = None, *, timeout: float | None = None,
         retries: int | None = None) -> object:
    """Run `command` on `service` and return its result.

    Sends to the service's queue, waits `timeout` seconds per try, retries `retries` times
    with exponential backoff, then raises RpcTimeout. Never call it from inside a Celery task
    (RpcMisuse): a worker blocked on a reply holds the slot the reply may need.
    """
    timeout = settings.RPC_DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout
    retries = settings.RPC_DEFAULT_RETRIES if retries is None else retries
    if timeout <= 0 or retries < 0:
        raise ValueError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
    try:
        svc = resolve_service(service)
    except ValueError as exc:
        raise errors.RpcUnknownCommand(service, command, str(exc)) from None
    label = {"service": svc.value, "command": command}
    if svc is Service.WEB or svc not in SERVICE_RPC_QUEUE:
        metrics.RPC_CALLS.labels(**label, status="unknown_command").inc()
        raise errors.RpcUnknownCommand(svc.value, command, "the web serves HTTP, not RPC")
    if lookup(svc, command) is None:
        metrics.RPC_CALLS.labels(**label, status="unknown_command").inc()
        raise errors.RpcUnknownCommand(svc.value, command, "no such command")
    if current_task and current_task.request and current_task.request.id and not current_task.request.called_directly:
        metrics.RPC_CALLS.labels(**label, status="misuse").inc()
        raise errors.RpcMisuse(svc.value, command, f"called from inside task {current_task.name}; "
                               "publish an event or chain tasks instead")
    params = params or {}
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        metrics.RPC_CALLS.labels(**label, status="bad_params").inc()
        raise errors.RpcBadParams(svc.value, command, f"params are not JSON: {exc}") from None

    from qtweb.rpc.tasks import execute

    queue = SERVICE_RPC_QUEUE[svc].value
    last_error: Exception | None = None
    t0 = time.perf_counter()
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        try:
            # expires: a request nobody picked up in time is dropped, not run after we gave up.
            async_result = execute.apply_async(args=(svc.value, command, params), queue=queue, expires=timeout)
        except Exception as exc:  # broker unreachable
            last_error = exc
            log.warning("rpc send failed", service=svc.value, command=command, attempt=attempt + 1, error=repr(exc))
            continue
        try:
            reply = async_result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
        except CeleryTimeout as exc:
            last_error = exc
            log.warning("rpc timed out", service=svc.value, command=command, attempt=attempt + 1, timeout=timeout)
            continue
        except Exception as exc:  # result backend unreachable
            last_error = exc
            continue
        finally:
            try:
                async_result.forget()
            except Exception:
                pass
        return _unwrap(svc, command, reply, t0)

    if isinstance(last_error, CeleryTimeout):
        metrics.RPC_CALLS.labels(**label, status="timeout").inc()
        raise errors.RpcTimeout(svc.value, command, f"no reply within {timeout}s after {retries + 1} tries "
                                f"(is a worker consuming queue {queue!r}?)")
    metrics.RPC_CALLS.labels(**label, status="unavailable").inc()
    raise errors.RpcUnavailable(svc.value, command, f"broker unreachable after {retries + 1} tries: {last_error!r}")


def _unwrap(svc: Service, command: str, reply: dict, t0: float) -> object:
    label = {"service": svc.value, "command": command}
    if reply.get("ok"):
        metrics.RPC_CALLS.labels(**label, status="ok").inc()
        metrics.RPC_LATENCY.labels(**label).observe(time.perf_counter() - t0)
        return reply.get("result")
    kind = reply.get("error", "remote")
    metrics.RPC_CALLS.labels(**label, status=kind).inc()
    if kind == "unknown_command":
        raise errors.RpcUnknownCommand(svc.value, command, reply.get("message", ""))
    if kind == "bad_params":
        raise errors.RpcBadParams(svc.value, command, reply.get("message", ""))
    raise errors.RpcRemoteError(svc.value, command, reply.get("type", "Exception"), reply.get("message", ""))
