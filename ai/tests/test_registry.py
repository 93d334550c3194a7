from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError

from ai import registry
from ai.models import ModelStatus, ModelVersion
from qtweb.events.models import Event

pytestmark = pytest.mark.django_db

T1 = datetime(2026, 10, 1, tzinfo=UTC)


def reg(model_type="xgboost", **kw):
    args = dict(model_type=model_type, artifact_path="/nonexistent", artifact_checksum="0" * 64, feature_version="1",
                feature_hash="h" * 64, training_start=T1, training_end=T1 + timedelta(days=30),
                metrics={"log_loss": 0.68, "accuracy": 0.55, "note": "text is kept but not published"})
    args.update(kw)
    return registry.register(**args)


def test_versions_count_up_per_type_and_enter_as_challengers():
    a, b, c = reg(), reg(), reg("nhits")
    assert (a.version, b.version, c.version) == (1, 2, 1)
    assert {a.status, b.status, c.status} == {ModelStatus.CHALLENGER}
    ev = Event.objects.filter(type="learning.event").first()
    assert ev.payload["kind"] == "retrain_completed" and ev.payload["metrics"] == {"log_loss": 0.68, "accuracy": 0.55}


def test_promotion_retires_the_previous_champion_and_is_recorded():
    a, b = reg(), reg()
    registry.promote(a.pk, reason="best validation log-loss")
    registry.promote(b.pk, reason="beat v1 out of sample")
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == ModelStatus.RETIRED and a.status_reason == "replaced by v2"
    assert b.status == ModelStatus.CHAMPION and b.promoted_at is not None
    assert [m.pk for m in registry.champions()] == [b.pk]
    kinds = list(Event.objects.filter(type="learning.event").values_list("payload__kind", flat=True))
    assert kinds.count("model_promoted") == 2


@pytest.mark.parametrize(("action", "message"), [
    (lambda mv: registry.promote(mv.pk, reason=""), "needs a reason"),
    (lambda mv: registry.promote(999_999, reason="why not"), "no model version with id 999999"),
    (lambda mv: (registry.retire(mv.pk, reason="bad data"), registry.promote(mv.pk, reason="again")),
     "only a challenger can be promoted"),
    (lambda mv: (registry.retire(mv.pk, reason="bad data"), registry.retire(mv.pk, reason="twice")),
     "already retired"),
])
def test_bad_requests_are_refused_with_the_reason(action, message):
    mv = reg()
    with pytest.raises(registry.RegistryError, match=message):
        action(mv)


def test_register_refuses_unknown_types_and_bad_windows():
    with pytest.raises(registry.RegistryError, match="unknown model type 'arima'"):
        reg("arima")
    with pytest.raises(registry.RegistryError, match="after"):
        reg(training_end=T1)
    with pytest.raises(registry.RegistryError, match="timezone-aware"):
        reg(training_start=datetime(2026, 1, 1))


def test_the_database_allows_one_champion_per_type():
    a, b = reg(), reg()
    registry.promote(a.pk, reason="first")
    with pytest.raises(IntegrityError):
        ModelVersion.objects.filter(pk=b.pk).update(status=ModelStatus.CHAMPION)


def test_a_champion_whose_artifact_is_missing_is_left_out_with_the_reason():
    mv = reg()
    registry.promote(mv.pk, reason="for the test")
    serving, problems = registry.load_champions(feature_version="1", feature_hash="h" * 64)
    assert serving == []
    assert problems["xgboost"].startswith("v1: ") and problems["lightgbm"] == "no champion"


def test_admin_actions_promote_and_retire(admin_client):
    a, b = reg(), reg()
    url = "/admin/ai/modelversion/"
    admin_client.post(url, {"action": "promote_selected", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.status == ModelStatus.CHAMPION and "admin" in a.status_reason
    resp = admin_client.post(url, {"action": "promote_selected", "_selected_action": [a.pk, b.pk]}, follow=True)
    assert any("select exactly one challenger" in str(m) for m in resp.context["messages"])
    admin_client.post(url, {"action": "retire_selected", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.status == ModelStatus.RETIRED


def test_api_lists_and_staff_promote_and_retire_with_a_reason(admin_client, client, django_user_model):
    a = reg()
    assert client.get("/api/models/").status_code in (401, 403)
    listed = admin_client.get("/api/models/?model_type=xgboost").json()
    assert [m["version"] for m in listed["results"]] == [1]
    assert admin_client.post(f"/api/models/{a.pk}/promote/", {"reason": ""}).status_code == 400
    resp = admin_client.post(f"/api/models/{a.pk}/promote/", {"reason": "best out of sample"})
    assert resp.status_code == 200 and resp.json()["status"] == "champion"
    assert "via API" in resp.json()["status_reason"]
    again = admin_client.post(f"/api/models/{a.pk}/promote/", {"reason": "twice"})
    assert again.status_code == 400 and "only a challenger" in again.json()["detail"]
    user = django_user_model.objects.create_user("viewer", password="pw-12345678")
    client.force_login(user)
    assert client.get("/api/models/").status_code == 200
    assert client.post(f"/api/models/{a.pk}/retire/", {"reason": "not mine to do"}).status_code == 403
    assert admin_client.post(f"/api/models/{a.pk}/retire/", {"reason": "superseded"}).json()["status"] == "retired"


@pytest.mark.django_db(transaction=True)
def test_a_promotion_succeeds_and_resets_the_live_record_even_without_a_cache(settings, clean_cache):
    """setup_demo trains and promotes before the embedded Redis runs: the live weights' record is a
    cache, and an unreachable one must not fail the promotion."""
    from django.core.cache import cache

    from ai import outcomes
    from ai.registry import promote

    outcomes.record_outcomes([("xgboost", 0.9, True)] * 3)
    first = reg("xgboost")
    promote(first.pk, reason="first of its type")
    assert "xgboost" not in outcomes.load_tracker().outcomes  # a new champion starts without the old record
    outcomes.record_outcomes([("xgboost", 0.9, True)])
    real = settings.CACHES
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:9/0"}}  # nothing listens there
    second = reg("xgboost")
    promoted = promote(second.pk, reason="the next one")
    assert promoted.status == "champion"
    settings.CACHES = real
    assert cache.get(outcomes.TRACKER_KEY) is not None  # the real cache kept its record: it was unreachable
