"""Process hooks: worker-ready hooks per queue, per-process memo resets (qtweb/lifecycle.py)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from qtweb import lifecycle
from qtweb.queues import Queue


@pytest.fixture
def empty_registry(monkeypatch):
    monkeypatch.setattr(lifecycle, "_worker_ready", [])
    monkeypatch.setattr(lifecycle, "_process_reset", [])


def test_worker_ready_hooks_run_only_for_the_queues_the_worker_consumes(empty_registry):
    ran = []

    def on_execution():
        ran.append("execution")

    lifecycle.on_worker_ready(Queue.EXECUTION, on_execution)
    lifecycle.on_worker_ready(Queue.EXECUTION, on_execution)  # AppConfig.ready run twice
    lifecycle.on_worker_ready(Queue.LEARNING, lambda: ran.append("learning"))

    lifecycle.run_worker_ready(["inference"])
    assert ran == []
    lifecycle.run_worker_ready(["execution", "bench-sink"])
    assert ran == ["execution"]
    lifecycle.run_worker_ready(["learning", "ops"])
    assert ran == ["execution", "learning"]


def test_a_failing_worker_ready_hook_does_not_stop_the_others(empty_registry):
    ran = []

    def broken():
        raise RuntimeError("broker down")

    lifecycle.on_worker_ready(Queue.EXECUTION, broken)
    lifecycle.on_worker_ready(Queue.EXECUTION, lambda: ran.append("second"))
    lifecycle.run_worker_ready(["execution"])
    assert ran == ["second"]


def test_process_resets_run_on_reset_and_in_every_forked_worker_process(empty_registry):
    from celery import signals

    import qtweb.worker  # noqa: F401  (connects worker_process_init)

    calls = []
    lifecycle.on_process_reset(lambda: calls.append("reset"))
    lifecycle.reset_process_memos()
    assert calls == ["reset"]
    signals.worker_process_init.send(sender=None)
    assert calls == ["reset", "reset"]


def test_the_execution_worker_queues_a_start_up_reconciliation(monkeypatch):
    from trading import tasks

    sent = []
    monkeypatch.setattr(tasks.reconcile_exchange, "apply_async", lambda **kw: sent.append(kw))
    lifecycle.run_worker_ready(["inference", "learning", "ops"])
    assert sent == []
    lifecycle.run_worker_ready(["execution"])
    assert sent == [{"kwargs": {"reason": "worker_start"}, "priority": 0}]


def test_the_apps_register_their_memo_resets():
    from ai.sizing import services as sizing
    from risk.services import policy, validation
    from trading.execution import orders

    sizing._memo[("equity",)] = (0.0, Decimal("1"))
    policy._memo = (1, object())
    validation._day_start = ("2024-01-01", Decimal("1000"))
    orders.mark_reconciled()

    lifecycle.reset_process_memos()

    assert sizing._memo == {}
    assert policy._memo is None
    assert validation._day_start is None
    assert not orders._reconciled.is_set()
