"""Fault injection for the crash tests: kill this worker at a named point.

`kill_point("exec", "after_send", enabled=settings.EXECUTION_FAULTS_ENABLED)`: when enabled (only
the test settings enable it, never production) and the cache holds the key
`<area>:fault:<name>`, the key is consumed and the whole worker (its process group: the test
fixture starts each worker in its own session) dies with SIGKILL here, as a power cut would.
"""
from __future__ import annotations

import os
import signal

from qtweb.logging import get_logger

log = get_logger(__name__)


def kill_point(area: str, name: str, *, enabled: bool) -> None:
    if not enabled:
        return
    from django.core.cache import cache

    key = f"{area}:fault:{name}"
    if cache.get(key):
        cache.delete(key)
        log.error("fault injection: SIGKILL to this worker's process group", fault=key)
        os.killpg(os.getpgid(os.getpid()), signal.SIGKILL)


class InjectedFault(RuntimeError):
    """Raised by fail_point: a component failing on purpose, for the self-healing tests."""


def fail_point(area: str, name: str, *, enabled: bool) -> None:
    """When enabled (test settings only) and the cache holds `<area>:fault:<name>`, raise here on
    every call until the key is deleted: a component that keeps failing, not a crash."""
    if not enabled:
        return
    from django.core.cache import cache

    key = f"{area}:fault:{name}"
    if cache.get(key):
        raise InjectedFault(f"fault injection: {key}")
