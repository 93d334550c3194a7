"""The query-parameter filters of analytics/api.py (the filter types and the 400 they give: trading/filters.py)."""
from __future__ import annotations

import django_filters

from ai.models import ModelType
from analytics.models import DriftCheck, JobStatus, JobTrigger, RetrainingJob
from trading.filters import ValueChoiceFilter


class RetrainingJobFilter(django_filters.FilterSet):
    model_type = ValueChoiceFilter(values=ModelType)
    status = ValueChoiceFilter(values=JobStatus)
    trigger = ValueChoiceFilter(values=JobTrigger)

    class Meta:
        model = RetrainingJob
        fields = ("model_type", "status", "trigger")


class DriftCheckFilter(django_filters.FilterSet):
    model_type = ValueChoiceFilter(values=ModelType)
    detected = django_filters.BooleanFilter()

    class Meta:
        model = DriftCheck
        fields = ("model_type", "detected")
