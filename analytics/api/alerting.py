"""Alert rules over HTTP (reads for any signed-in user, changes for staff).

GET    /api/alerts/rules/            every rule
POST   /api/alerts/rules/            a new rule -> 201; a malformed one -> 400 {field: [reason]}
GET    /api/alerts/rules/<id>/       one rule
PUT    /api/alerts/rules/<id>/       replace it; PATCH: change some fields (checked with the rest)
DELETE /api/alerts/rules/<id>/       remove it (its firings stay, with the rule's name; disabling is the usual way)
GET    /api/alerts/firings/          what the rules did (?rule=<id> ?rule_name= ?subject= ?outcome= ?open=true)
"""
from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.generics import ListAPIView, ListCreateAPIView, RetrieveUpdateDestroyAPIView
from rest_framework.permissions import SAFE_METHODS, IsAdminUser, IsAuthenticated

from analytics.alerting import catalog
from analytics.alerting.rules import alert_firing_list, alert_rule_list
from analytics.filters import AlertFiringFilter
from analytics.models import AlertFiring, AlertRule


@extend_schema_field(OpenApiTypes.NUMBER)
class ThresholdField(serializers.Field):
    """A JSON number (a numeric string from a form post too). What is not a finite number
    (booleans, words, NaN, infinities) is refused by the catalogue's check in
    AlertRuleSerializer.validate, so the API says what the admin says."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                return float(data.strip())  # "nan" / "1e999" come out non-finite: refused as such
            except ValueError:
                return data
        return data

    def to_representation(self, value):
        return value


class AlertRuleSerializer(serializers.ModelSerializer):
    threshold = ThresholdField(help_text="a number within the metric's range (see the catalogue in the README)")

    class Meta:
        model = AlertRule
        fields = ["id", "name", "description", "metric", "comparison", "threshold", "action", "severity", "enabled",
                  "cooldown_seconds", "updated_at", "updated_by"]
        read_only_fields = ["updated_at", "updated_by"]

    def validate(self, attrs):
        # A partial update is checked together with the rule's other fields: a new threshold must
        # fit the metric the rule already has.
        keys = ("metric", "comparison", "threshold", "action", "severity")
        if self.instance is not None:
            merged = {k: getattr(self.instance, k) for k in keys}
        else:
            merged = {k: AlertRule._meta.get_field(k).get_default() for k in keys}
        merged.update({k: attrs[k] for k in keys if k in attrs})
        try:
            catalog.validate_rule(**merged)
        except catalog.RuleError as exc:
            raise serializers.ValidationError({exc.field: [exc.message]}) from None
        return attrs


class _StaffWrites:
    def get_permissions(self):  # reads for any signed-in user, changes for staff (as the learning API)
        return [IsAuthenticated()] if self.request.method in SAFE_METHODS else [IsAdminUser()]

    def perform_create(self, serializer):
        serializer.save(updated_by=self.request.user.get_username())

    def perform_update(self, serializer):
        serializer.save(updated_by=self.request.user.get_username())


class AlertRuleListView(_StaffWrites, ListCreateAPIView):
    serializer_class = AlertRuleSerializer

    def get_queryset(self):
        return alert_rule_list()


class AlertRuleDetailView(_StaffWrites, RetrieveUpdateDestroyAPIView):
    serializer_class = AlertRuleSerializer

    def get_queryset(self):
        return alert_rule_list()


class AlertFiringSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)

    class Meta:
        model = AlertFiring
        fields = ["id", "rule", "rule_name", "subject", "value", "threshold", "fired_at", "resolved_at",
                  "action_outcome", "action_result", "trace_id"]


class AlertFiringListView(ListAPIView):
    serializer_class = AlertFiringSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = AlertFiringFilter

    def get_queryset(self):
        return alert_firing_list()
