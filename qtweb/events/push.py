"""Push events to the dashboard's Channels group without blocking the publisher.

`async_to_sync(group_send)` per event would start an event loop (and a Redis connection)
each time. Instead each process keeps one background loop thread and hands it the sends:
the publisher pays for a queue put, the loop reuses one channel-layer connection. Pushes are
best effort (the outbox, not the dashboard, is the record); a failed push is logged.
"""
from __future__ import annotations

import asyncio
import os
import threading

from qtweb.logging import get_logger

log = get_logger(__name__)

DASHBOARD_GROUP = "dashboard"
# Events waiting to be pushed before new ones are dropped (the dashboard is a live view,
# a slow Redis must not grow a publisher's memory without bound).
MAX_PENDING_PUSHES = 10_000


class _Pusher:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.pending = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dashboard-push", daemon=True)
        self.thread.start()

    async def _send(self, message: dict) -> None:
        from channels.layers import get_channel_layer

        try:
            layer = get_channel_layer()
            if layer is not None:
                await layer.group_send(DASHBOARD_GROUP, message)
        except Exception as exc:
            log.warning("dashboard push failed", error=repr(exc), event_type=message.get("event", {}).get("type"))
        finally:
            with self.lock:
                self.pending -= 1

    def submit(self, message: dict) -> None:
        with self.lock:
            if self.pending >= MAX_PENDING_PUSHES:
                return
            self.pending += 1
        asyncio.run_coroutine_threadsafe(self._send(message), self.loop)

    def drain(self, timeout: float = 5.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while self.pending > 0 and time.monotonic() < deadline:
            time.sleep(0.005)


_pusher: _Pusher | None = None
_pusher_lock = threading.Lock()


def _get_pusher() -> _Pusher:
    global _pusher
    with _pusher_lock:
        if _pusher is None or _pusher.pid != os.getpid():  # a forked child needs its own loop
            _pusher = _Pusher()
        return _pusher


def push_to_dashboard(wire_envelope: dict) -> None:
    _get_pusher().submit({"type": "bus.event", "event": wire_envelope})


def drain(timeout: float = 5.0) -> None:
    """Wait until queued pushes are sent (tests, shutdown)."""
    if _pusher is not None and _pusher.pid == os.getpid():
        _pusher.drain(timeout)
