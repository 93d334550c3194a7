"""A model that raises on every call, with the real inference and ops workers, PostgreSQL and Redis:
self-healing quarantines it, the ensemble goes on signalling with the others, and the model is
released once it answers again."""
from __future__ import annotations

from io import StringIO

import pytest
from celery import current_app
from django.core.cache import cache
from django.core.management import call_command

from qtweb.events.models import Event
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

FAULT = "ai:fault:predict:xgboost"


@pytest.fixture
def champions(settings, tmp_path, celery_workers):
    from analytics.models import AlertRule
    from tests.support.execution import clear_app_cache
    from trading.simulator.service import seed_history

    clear_app_cache()
    cache.delete("health:modules:ai-service")
    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")  # absolute paths: the workers read them too
    seed_history(days=2, seed=4)
    call_command("train_models", "--max-epochs", "1", "--bars", "400", "--sample-every", "8", stdout=StringIO())
    AlertRule.objects.all().delete()  # the self-healing checks are under test, not the rules
    yield
    cache.delete(FAULT)
    cache.delete("health:modules:ai-service")
    clear_app_cache()


def inference_pass() -> dict:
    """One real pass on the inference worker; the payload of one of its signals."""
    before = Event.objects.filter(type="signal.generated").count()
    current_app.send_task("ai.inference.run", queue="inference")
    assert wait_for(lambda: Event.objects.filter(type="signal.generated").count() > before, timeout=90, poll=0.2)
    return Event.objects.filter(type="signal.generated").latest("timestamp").payload


def monitor_pass():
    """The health monitor's real task on the real ops worker."""
    from analytics.health.graph import latest

    before = (latest() or {}).get("generated_at")
    current_app.send_task("analytics.health.evaluate", queue="ops")
    assert wait_for(lambda: (latest() or {}).get("generated_at") != before, timeout=30, poll=0.2)


def test_a_model_that_raises_on_every_call_is_quarantined_and_released_after_it_recovers(champions, settings):
    from ai.models import ModelStatus, ModelVersion
    from analytics.models import HealingAction

    xgb = ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION)
    assert inference_pass()["models_voted"] == 4

    cache.set(FAULT, 1, timeout=600)
    for _ in range(settings.SELF_HEALING_MODEL_FAILURES):
        assert inference_pass()["models_voted"] == 3  # dropped from each vote, the others decide
    monitor_pass()
    xgb.refresh_from_db()
    assert xgb.quarantined_at is not None and xgb.quarantine_reason.startswith("self-healing: failed 3 votes")
    action = HealingAction.objects.get(kind="quarantine_model", target="xgboost")
    assert action.outcome == "done" and "InjectedFault" in action.details["error"]
    alert = Event.objects.filter(type="system.alert", payload__component="self_healing").latest("timestamp")
    assert "quarantine_model xgboost" in alert.payload["message"] and alert.payload["severity"] == "critical"
    learning = Event.objects.filter(type="learning.event", payload__kind="model_quarantined").get()
    assert learning.payload["model_type"] == "xgboost"

    signal = inference_pass()  # quarantined and still failing: the ensemble goes on without it
    assert signal["models_voted"] == 3 and signal["action"] in {"BUY", "SELL", "HOLD"}
    monitor_pass()
    assert not HealingAction.objects.filter(kind="release_model").exists()

    cache.delete(FAULT)  # the cause is gone: it answers again (and still does not vote)
    for _ in range(settings.SELF_HEALING_MODEL_RECOVERIES):
        assert inference_pass()["models_voted"] == 3
    monitor_pass()
    xgb.refresh_from_db()
    assert xgb.quarantined_at is None
    assert HealingAction.objects.get(kind="release_model", target="xgboost").outcome == "done"
    assert inference_pass()["models_voted"] == 4
