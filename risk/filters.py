"""The query-parameter filters of risk/api.py (the filter types and the 400 they give: trading/filters.py)."""
from __future__ import annotations

import django_filters

from risk.models import RiskDecision
from trading.filters import TrueFalseFilter


class RiskDecisionFilter(django_filters.FilterSet):
    symbol = django_filters.CharFilter()
    approved = TrueFalseFilter()

    class Meta:
        model = RiskDecision
        fields = ("symbol", "approved")
