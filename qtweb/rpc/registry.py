"""Commands each service answers. Apps register theirs in `<app>/rpc.py` (imported at ready)."""
from __future__ import annotations

from collections.abc import Callable

from qtweb.queues import Service, resolve_service

_commands: dict[tuple[Service, str], Callable[..., object]] = {}


def command(service: str, name: str | None = None):
    """Decorator: `@command("ai", "get_signal")` registers fn(**params) -> JSON-able result."""
    svc = resolve_service(service)

    def decorate(fn):
        _commands[(svc, name or fn.__name__)] = fn
        return fn

    return decorate


def lookup(service: Service, name: str) -> Callable[..., object] | None:
    return _commands.get((service, name))


def commands_of(service: Service) -> list[str]:
    return sorted(n for (s, n) in _commands if s == service)


def ping_reply(service: Service) -> dict:
    """What every service's `ping` answers: who answered, and when."""
    import os
    import socket
    from datetime import UTC, datetime

    from celery import current_task

    return {
        "service": service.value,
        "worker": getattr(getattr(current_task, "request", None), "hostname", None),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": datetime.now(UTC).isoformat(),
    }
