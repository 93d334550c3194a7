"""The query-parameter filters of trading/api.py, and the two filter types that ai/filters.py
and risk/filters.py use too. A bad value is a 400 naming the parameter and what it accepts,
e.g. {"status": ["one of open, closed, got 'maybe'"]}; an absent or empty parameter filters
nothing."""
from __future__ import annotations

from collections.abc import Iterable

import django_filters
from django import forms

from trading.models import (
    ExecutionIntent,
    IntentSource,
    IntentStatus,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    ReconciliationRun,
)


class ValueChoiceFilter(django_filters.ChoiceFilter):
    """Exact match on one of `values` (enum members or strings), spelled as stored."""

    def __init__(self, *args, values: Iterable, **kwargs):
        allowed = [str(getattr(v, "value", v)) for v in values]
        listed = ", ".join(allowed).replace("%", "%%")  # the message is %-formatted with the value
        kwargs.setdefault("error_messages", {"invalid_choice": f"one of {listed}, got %(value)r"})
        super().__init__(*args, choices=[(v, v) for v in allowed], **kwargs)


class _TrueFalseField(forms.Field):
    def to_python(self, value):
        if value in self.empty_values:
            return None
        flag = str(value).strip().lower()
        if flag in ("true", "1"):
            return True
        if flag in ("false", "0"):
            return False
        raise forms.ValidationError("true or false, got %(value)r", code="invalid", params={"value": value})


class TrueFalseFilter(django_filters.BooleanFilter):
    """true / false (also 1 / 0, any case). django-filter's BooleanFilter would instead ignore
    a value it does not know (?approved=maybe would list everything)."""

    field_class = _TrueFalseField


class PositionFilter(django_filters.FilterSet):
    status = ValueChoiceFilter(values=PositionStatus)
    symbol = django_filters.CharFilter(field_name="symbol__symbol")

    class Meta:
        model = Position
        fields = ("status", "symbol")


class OrderFilter(django_filters.FilterSet):
    status = ValueChoiceFilter(values=OrderStatus)
    symbol = django_filters.CharFilter(field_name="symbol__symbol")
    client_order_id = django_filters.CharFilter()

    class Meta:
        model = Order
        fields = ("status", "symbol", "client_order_id")


class ExecutionIntentFilter(django_filters.FilterSet):
    status = ValueChoiceFilter(values=IntentStatus)
    source = ValueChoiceFilter(values=IntentSource)
    symbol = django_filters.CharFilter(field_name="symbol__symbol")
    trace_id = django_filters.CharFilter()

    class Meta:
        model = ExecutionIntent
        fields = ("status", "source", "symbol", "trace_id")


class ReconciliationRunFilter(django_filters.FilterSet):
    ok = TrueFalseFilter()

    class Meta:
        model = ReconciliationRun
        fields = ("ok",)
