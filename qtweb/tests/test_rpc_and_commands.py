"""RPC argument and misuse errors (no worker needed), and the set-up management commands."""
from __future__ import annotations

import os
import stat
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from qtweb import rpc
from qtweb.rpc.tasks import execute
from qtweb.schedules import SCHEDULES


def test_unknown_service_and_command_are_typed_errors_naming_both():
    with pytest.raises(rpc.RpcUnknownCommand, match="nosuch"):
        rpc.call("nosuch", "ping")
    with pytest.raises(rpc.RpcUnknownCommand) as info:
        rpc.call("ai", "launch_rockets")
    assert info.value.service == "ai-service" and info.value.command == "launch_rockets"


def test_params_must_be_json():
    with pytest.raises(rpc.RpcBadParams, match="not JSON"):
        rpc.call("ai", "ping", {"when": object()})


def test_bad_timeout_is_refused():
    with pytest.raises(ValueError, match="timeout"):
        rpc.call("ai", "ping", timeout=0)


def test_rpc_from_inside_a_task_is_refused():
    from celery import shared_task

    @shared_task(name="tests.rpc_inside")
    def inside():
        return rpc.call("analytics", "ping")

    with pytest.raises(rpc.RpcMisuse, match="inside task"):
        inside.apply().get()


def test_execute_returns_errors_as_data():
    assert execute.run("ai-service", "nope", {})["error"] == "unknown_command"
    assert execute.run("ai-service", "ping", {"unexpected": 1})["error"] == "bad_params"
    reply = execute.run("analytics-os-service", "ping", {})
    assert reply["ok"] and reply["result"]["service"] == "analytics-os-service"


@pytest.mark.django_db
def test_setup_periodic_tasks_is_idempotent_and_removes_stale_managed_entries():
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    assert f"{len(SCHEDULES)} created" in out.getvalue()
    PeriodicTask.objects.create(name="qt:obsolete", task="x", interval=PeriodicTask.objects.first().interval)
    PeriodicTask.objects.create(name="operator job", task="y", interval=PeriodicTask.objects.first().interval)
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    assert "0 created, 0 updated, 1 removed" in out.getvalue()
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert set(SCHEDULES) <= names and "operator job" in names and "qt:obsolete" not in names
    for name, sched in SCHEDULES.items():
        task = PeriodicTask.objects.get(name=name)
        assert task.queue == sched.queue.value and task.expire_seconds == int(sched.expires_seconds)


@pytest.mark.django_db
def test_ensure_admin_creates_one_admin_with_a_generated_password_once(settings, tmp_path):
    from django.contrib.auth import get_user_model

    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    creds = Path(tmp_path, "admin-credentials.txt")
    text = creds.read_text()
    password = text.split("password: ")[1].strip()
    assert password in out.getvalue() and len(password) >= 12
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert get_user_model().objects.get(username="admin").check_password(password)
    out2 = StringIO()
    call_command("ensure_admin", stdout=out2)
    assert password not in out2.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


@pytest.mark.parametrize("err", [rpc.RpcTimeout("ai-service", "ping", "slow"),
                                 rpc.RpcRemoteError("ai-service", "get_signal", "KeyError", "BTC")])
def test_rpc_errors_pickle_with_their_fields(err):
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.service == "ai-service"
