"""The Celery contract: queues declared once, each task declared with its queue, JSON only, limits,
execution semantics."""
from __future__ import annotations

import configparser
from io import StringIO
from pathlib import Path

import pytest

from qtweb.celery import app
from qtweb.queues import SERVICE_PORTS, SERVICE_QUEUES, Queue, Service, resolve_service, service_for_queue
from qtweb.taskqueue import EXECUTION_TASK_OPTIONS, queue_task, task_queue, task_routes

ROOT = Path(__file__).resolve().parents[2]


def test_the_four_queues_are_declared_and_owned_by_one_service_each():
    assert {q.name for q in app.conf.task_queues} == {"inference", "execution", "learning", "ops"}
    owned = [q for queues in SERVICE_QUEUES.values() for q in queues]
    assert sorted(owned) == sorted(Queue)
    assert SERVICE_PORTS == {Service.WEB: 8000, Service.AI: 8001, Service.EXEC_RISK: 8002, Service.ANALYTICS: 8003}


@pytest.fixture(scope="module")
def project_tasks():
    """Every task module of the installed apps imported, as a worker does at start."""
    app.loader.import_default_modules()
    # Tasks defined in test modules (qtweb/tests/test_rpc_and_commands.py) are not the project's.
    return {name: t for name, t in app.tasks.items() if type(t).__module__.rsplit(".", 1)[-1] == "tasks"}


@pytest.mark.parametrize(("task", "queue"), [
    ("ai.inference.run", "inference"), ("trading.execution.process_intent", "execution"),
    ("trading.reconcile", "execution"), ("ai.sizing.retrain_rl_agent", "learning"),
    ("analytics.health.evaluate", "ops"), ("qtweb.events.redispatch_pending", "ops"),
])
def test_tasks_route_to_the_queue_they_declare(project_tasks, task, queue):
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue == task_queue(task)


def test_every_task_of_the_project_declares_exactly_one_queue(project_tasks):
    assert project_tasks, "no task module was imported"
    undeclared = sorted(name for name in project_tasks if task_queue(name) is None)
    assert not undeclared, f"declare these with @queue_task: {undeclared}"
    assert set(task_routes()) <= set(app.tasks)
    with pytest.raises(ValueError, match="already declared on the inference queue"):
        queue_task(Queue.OPS, name="ai.inference.run")(lambda: None)
    assert task_queue("ai.inference.run") is Queue.INFERENCE


def test_every_schedule_sends_a_task_that_exists_to_the_queue_it_declares(project_tasks):
    from qtweb.schedules import RENAMED_TASKS, SCHEDULES

    for key, sched in SCHEDULES.items():
        assert sched.task in project_tasks, key
        assert task_queue(sched.task) is sched.queue, key
    assert not set(RENAMED_TASKS) & set(project_tasks)
    assert set(RENAMED_TASKS.values()) <= set(project_tasks)


def test_a_name_alone_no_longer_picks_a_queue_and_an_explicit_queue_wins(project_tasks):
    assert app.amqp.router.route({}, "trading.undeclared")["queue"].name == app.conf.task_default_queue == "ops"
    assert app.amqp.router.route({"queue": "execution"}, "qtweb.rpc.execute")["queue"].name == "execution"
    assert app.amqp.router.route({"queue": "learning"}, "trading.reconcile")["queue"].name == "learning"


def test_json_only_and_time_limits():
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_soft_time_limit and app.conf.task_time_limit > app.conf.task_soft_time_limit


def test_execution_semantics(project_tasks):
    assert EXECUTION_TASK_OPTIONS == {"acks_late": True, "reject_on_worker_lost": True}
    execution = [name for name, queue in task_routes().items() if queue is Queue.EXECUTION]
    assert "trading.execution.process_intent" in execution
    for name in execution:
        assert app.tasks[name].acks_late and app.tasks[name].reject_on_worker_lost, name
    with pytest.raises(TypeError, match="execution-queue tasks always run with"):
        queue_task(Queue.EXECUTION, name="tests.not_idempotent", acks_late=False)
    assert task_queue("tests.not_idempotent") is None
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


@pytest.mark.django_db
def test_beat_rows_stored_under_a_renamed_task_follow_the_rename():
    from django.core.management import call_command
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from qtweb.schedules import RENAMED_TASKS, SCHEDULES

    old, new = "analytics.learning.retrain_rl_agent", "ai.sizing.retrain_rl_agent"
    assert RENAMED_TASKS[old] == new
    daily, _ = IntervalSchedule.objects.get_or_create(every=86400, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name=f"qt:{old}", task=old, interval=daily, queue="learning", enabled=False)
    PeriodicTask.objects.create(name="operator retrain", task=old, interval=daily)
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    assert "2 renamed" in out.getvalue()
    assert not PeriodicTask.objects.filter(task__in=list(RENAMED_TASKS)).exists()
    row = PeriodicTask.objects.get(task=new, name__startswith="qt:")
    assert row.name == f"qt:{new}" and f"qt:{new}" in SCHEDULES
    assert not row.enabled  # the operator had paused it; the rename keeps that
    assert PeriodicTask.objects.get(name="operator retrain").task == new
