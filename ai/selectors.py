"""Reads of the ai app's records for its API."""
from __future__ import annotations

from django.db.models import QuerySet

from ai.models import EvaluationReport, ModelVersion


def evaluation_report_list() -> QuerySet[EvaluationReport]:
    """Runs of manage.py evaluate_models, newest first."""
    return EvaluationReport.objects.order_by("-created_at")


def model_version_list() -> QuerySet[ModelVersion]:
    """The model registry, by model type, newest version first."""
    return ModelVersion.objects.order_by("model_type", "-version")
