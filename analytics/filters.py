"""The query-parameter filters of analytics/api.py (the filter types and the 400 they give: trading/filters.py)."""
from __future__ import annotations

import django_filters

from ai.models import ModelType
from analytics.models import (
    AlertFiring,
    DirectiveOutcome,
    DriftCheck,
    HealingAction,
    HealingKind,
    HealingOutcome,
    HealthTransition,
    HfosDecision,
    HfosDirective,
    JobStatus,
    JobTrigger,
    PositionAssessment,
    RetrainingJob,
)
from analytics.orchestration.hfos import LAYERS
from analytics.orchestration.intelligence import AT_RISK, LOSER, STALE, WINNER
from qtweb.events.schemas import HealthState
from trading.filters import TrueFalseFilter, ValueChoiceFilter


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


class AlertFiringFilter(django_filters.FilterSet):
    """?rule=<id> ?rule_name=<name> ?subject=<queue, worker, exchange, model type> ?outcome= ?open=true|false"""

    rule = django_filters.NumberFilter(field_name="rule_id")
    rule_name = django_filters.CharFilter(field_name="rule__name")
    subject = django_filters.CharFilter()
    outcome = ValueChoiceFilter(field_name="action_outcome", values=HealingOutcome)
    open = TrueFalseFilter(field_name="resolved_at", lookup_expr="isnull")

    class Meta:
        model = AlertFiring
        fields = ("rule", "rule_name", "subject", "outcome", "open")


class HealthTransitionFilter(django_filters.FilterSet):
    """?component=queue:inference (exact, as listed) ?status=CRITICAL ?since=<ISO 8601, inclusive>"""

    component = django_filters.CharFilter()
    status = ValueChoiceFilter(values=HealthState)
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")

    class Meta:
        model = HealthTransition
        fields = ("component", "status", "since")


class HealingActionFilter(django_filters.FilterSet):
    """?kind=restart_worker ?target=inference (a queue, worker, model type or "mode") ?outcome=done"""

    kind = ValueChoiceFilter(values=HealingKind)
    target = django_filters.CharFilter()
    outcome = ValueChoiceFilter(values=HealingOutcome)

    class Meta:
        model = HealingAction
        fields = ("kind", "target", "outcome")


class HfosDecisionFilter(django_filters.FilterSet):
    """?trace_id=<id> ?since=<ISO 8601> ?layer=pal ?outcome=overruled: decisions with one directive
    that is both of that layer and of that outcome (not one of each)."""

    trace_id = django_filters.CharFilter()
    layer = ValueChoiceFilter(values=LAYERS, method="_together")
    outcome = ValueChoiceFilter(values=DirectiveOutcome, method="_together")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = HfosDecision
        fields = ("trace_id", "layer", "outcome", "since")

    def _together(self, queryset, name, value):
        return queryset  # applied once for both in filter_queryset

    def filter_queryset(self, queryset):
        from django.db.models import Exists, OuterRef

        queryset = super().filter_queryset(queryset)
        wanted = {k: self.form.cleaned_data.get(k) for k in ("layer", "outcome")}
        wanted = {k: v for k, v in wanted.items() if v}
        if wanted:
            queryset = queryset.filter(Exists(HfosDirective.objects.filter(decision=OuterRef("pk"), **wanted)))
        return queryset


class PositionAssessmentFilter(django_filters.FilterSet):
    """?open=true ?label=at_risk ?symbol=BTC/USDT"""

    open = TrueFalseFilter()
    label = ValueChoiceFilter(values=(WINNER, LOSER, STALE, AT_RISK))
    symbol = django_filters.CharFilter()

    class Meta:
        model = PositionAssessment
        fields = ("open", "label", "symbol")
