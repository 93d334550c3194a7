"""The Celery contract: queues declared once, routing by name, JSON only, limits, execution semantics."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from qtweb.celery import EXECUTION_TASK_OPTIONS, app
from qtweb.queues import SERVICE_PORTS, SERVICE_QUEUES, Queue, Service, resolve_service, service_for_queue

ROOT = Path(__file__).resolve().parents[2]


def test_the_four_queues_are_declared_and_owned_by_one_service_each():
    assert {q.name for q in app.conf.task_queues} == {"inference", "execution", "learning", "ops"}
    owned = [q for queues in SERVICE_QUEUES.values() for q in queues]
    assert sorted(owned) == sorted(Queue)
    assert SERVICE_PORTS == {Service.WEB: 8000, Service.AI: 8001, Service.EXEC_RISK: 8002, Service.ANALYTICS: 8003}


@pytest.mark.parametrize(("task", "queue"), [
    ("ai.inference.run", "inference"), ("trading.orders.place", "execution"), ("risk.validate", "execution"),
    ("analytics.learning.retrain", "learning"), ("analytics.health.evaluate", "ops"),
    ("qtweb.events.redispatch_pending", "ops"),
])
def test_tasks_route_by_name(task, queue):
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue


def test_json_only_and_time_limits():
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_soft_time_limit and app.conf.task_time_limit > app.conf.task_soft_time_limit


def test_execution_semantics():
    assert EXECUTION_TASK_OPTIONS == {"acks_late": True, "reject_on_worker_lost": True}
    from qtweb.events.tasks import deliver_event as deliver

    assert deliver.acks_late and deliver.reject_on_worker_lost
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "deploy" / "supervisord.conf")
    assert "--prefetch-multiplier 1" in conf.get("program:worker-execution", "command")
    for q in Queue:
        assert f"-Q {q.value} " in conf.get(f"program:worker-{q.value}", "command")


def test_service_names_resolve_and_unknown_ones_say_what_exists():
    assert resolve_service("ai") is Service.AI and service_for_queue("ops") is Service.ANALYTICS
    with pytest.raises(ValueError, match="known services"):
        resolve_service("nope")
    with pytest.raises(ValueError, match="known queues"):
        service_for_queue("fast")
