"""Process hooks the apps register in their AppConfig.ready, so the platform can set them off
without importing any app.

- on_worker_ready(queue, fn): qtweb/worker.py calls fn() once a worker consuming `queue` is
  ready (the trading app queues its start-up reconciliation this way).
- on_process_reset(fn): reset_process_memos() calls every fn(). Per-process memos (the day's
  starting equity, leverage already set on the exchange, a cached policy) describe one database
  and one exchange session; they are dropped in each forked worker child and after every test.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from qtweb.queues import Queue

Hook = Callable[[], object]

_worker_ready: list[tuple[Queue, Hook]] = []
_process_reset: list[Hook] = []


def on_worker_ready(queue: Queue, fn: Hook) -> Hook:
    """Run fn() when a worker that consumes `queue` is ready. Registering twice is a no-op."""
    entry = (Queue(queue), fn)
    if entry not in _worker_ready:
        _worker_ready.append(entry)
    return fn


def on_process_reset(fn: Hook) -> Hook:
    """Run fn() on reset_process_memos(). Registering twice is a no-op."""
    if fn not in _process_reset:
        _process_reset.append(fn)
    return fn


def run_worker_ready(queues: Iterable[str]) -> None:
    """The hooks of every queue in `queues`, in registration order. A failing hook is logged and
    does not keep the others, or the worker, from starting."""
    from qtweb.logging import get_logger

    known = {q.value for q in Queue}
    consumed = {Queue(q) for q in queues if q in known}  # a bench sink queue is not a Queue
    for queue, fn in list(_worker_ready):
        if queue not in consumed:
            continue
        try:
            fn()
        except Exception as exc:
            get_logger("qtweb.lifecycle").error("worker-ready hook failed", queue=queue.value,
                                                hook=_name(fn), error=repr(exc))


def reset_process_memos() -> None:
    """Call every registered reset (each must be cheap and touch neither database nor network)."""
    for fn in list(_process_reset):
        fn()


def _name(fn: Hook) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
