"""/api/models/ and /api/reports/: the registry list and its filters (a bad value is a 400
naming the parameter and what it takes), evaluation reports newest first."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ai.models import EvaluationReport, ModelStatus, ModelVersion

pytestmark = pytest.mark.django_db

T1 = datetime(2026, 10, 1, tzinfo=UTC)


def version(model_type: str, number: int, status: str = ModelStatus.CHALLENGER) -> ModelVersion:
    return ModelVersion.objects.create(
        model_type=model_type, version=number, status=status, created_at=T1, training_start=T1,
        training_end=T1 + timedelta(days=30), feature_version="1", feature_hash="h" * 64,
        artifact_path="/nonexistent", artifact_checksum="0" * 64)


def test_registry_list_is_ordered_and_filtered_by_status_and_model_type(admin_client):
    version("xgboost", 1, ModelStatus.RETIRED)
    version("xgboost", 2, ModelStatus.CHAMPION)
    version("nhits", 1)
    listed = [(m["model_type"], m["version"]) for m in admin_client.get("/api/models/").json()["results"]]
    assert listed == [("nhits", 1), ("xgboost", 2), ("xgboost", 1)]
    champions = admin_client.get("/api/models/", {"status": "champion"}).json()["results"]
    assert [(m["model_type"], m["version"]) for m in champions] == [("xgboost", 2)]
    both = admin_client.get("/api/models/", {"status": "challenger", "model_type": "nhits"}).json()
    assert both["count"] == 1
    assert admin_client.get("/api/models/", {"status": "", "model_type": ""}).json()["count"] == 3


@pytest.mark.parametrize(("param", "value", "allowed"), [
    ("status", "best", "one of champion, challenger, retired, got 'best'"),
    ("model_type", "prophet", "one of xgboost, lightgbm, nhits, patchtst, got 'prophet'"),
])
def test_a_bad_registry_filter_is_400_naming_the_parameter_and_its_values(admin_client, param, value, allowed):
    resp = admin_client.get("/api/models/", {param: value})
    assert resp.status_code == 400
    assert resp.json() == {param: [allowed]}


def test_evaluation_reports_newest_first(admin_client):
    EvaluationReport.objects.create(path="reports/a", created_at=T1)
    EvaluationReport.objects.create(path="reports/c", created_at=T1 + timedelta(days=2))
    EvaluationReport.objects.create(path="reports/b", created_at=T1 + timedelta(days=1))
    listed = [r["path"] for r in admin_client.get("/api/reports/").json()["results"]]
    assert listed == ["reports/c", "reports/b", "reports/a"]
