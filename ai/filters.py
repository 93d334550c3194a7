"""The query-parameter filters of ai/api.py (the filter types and the 400 they give: trading/filters.py)."""
from __future__ import annotations

import django_filters

from ai.models import ModelStatus, ModelType, ModelVersion
from trading.filters import ValueChoiceFilter


class ModelVersionFilter(django_filters.FilterSet):
    status = ValueChoiceFilter(values=ModelStatus)
    model_type = ValueChoiceFilter(values=ModelType)

    class Meta:
        model = ModelVersion
        fields = ("status", "model_type")
