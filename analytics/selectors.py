"""Reads of the learning manager's records for its API and admin."""
from __future__ import annotations

from django.db.models import QuerySet

from analytics.models import DriftCheck, PredictionOutcome, RetrainingJob


def retraining_job_list() -> QuerySet[RetrainingJob]:
    """Retraining jobs, newest first."""
    return RetrainingJob.objects.order_by("-requested_at")


def drift_check_list() -> QuerySet[DriftCheck]:
    """Drift checks, newest first."""
    return DriftCheck.objects.select_related("model_version").order_by("-checked_at")


def prediction_outcome_list() -> QuerySet[PredictionOutcome]:
    return PredictionOutcome.objects.order_by("-bar_open_time")
