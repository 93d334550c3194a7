"""Trace ids: one id from the first event of a flow to every task, child event and log line.

The id lives in a contextvar. Celery carries it in a message header (`trace_id`): the
`before_task_publish` hook (qtweb/worker.py) stamps the current id on every outgoing task,
and `task_prerun` binds it in the worker before the task body runs.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

TRACE_HEADER = "trace_id"
_TRACE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")

_current: ContextVar[str | None] = ContextVar("trace_id", default=None)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def is_valid_trace_id(value: object) -> bool:
    return isinstance(value, str) and bool(_TRACE_ID_RE.match(value))


def current_trace_id() -> str | None:
    return _current.get()


def set_trace_id(trace_id: str | None):
    """Bind trace_id for this context (and its log lines); returns a token for reset."""
    structlog.contextvars.bind_contextvars(trace_id=trace_id)
    return _current.set(trace_id)


def reset_trace_id(token) -> None:
    _current.reset(token)
    structlog.contextvars.bind_contextvars(trace_id=_current.get())


@contextmanager
def trace(trace_id: str | None = None) -> Iterator[str]:
    """Run a block under trace_id (a new one if none is given and none is active)."""
    tid = trace_id or current_trace_id() or new_trace_id()
    token = set_trace_id(tid)
    try:
        yield tid
    finally:
        reset_trace_id(token)
