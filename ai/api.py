"""The ai app's HTTP API (authenticated, the DRF default): evaluation reports and the model
registry (list; promote and retire for staff, through ai.registry)."""
from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from ai import selectors
from ai.filters import ModelVersionFilter
from ai.models import EvaluationReport, MetaStrategyDecision, ModelVersion


class EvaluationReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvaluationReport
        fields = ["id", "created_at", "path", "summary", "params"]


class EvaluationReportListView(ListAPIView):
    """Runs of manage.py evaluate_models, newest first: report folder, verdict, headline figures."""

    serializer_class = EvaluationReportSerializer

    def get_queryset(self):
        return selectors.evaluation_report_list()


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "model_type", "version", "status", "status_reason", "created_at", "promoted_at", "retired_at",
                  "training_start", "training_end", "feature_version", "feature_hash", "metrics", "artifact_checksum"]


class ModelVersionListView(ListAPIView):
    """The model registry; filter with ?status=champion and ?model_type=xgboost."""

    serializer_class = ModelVersionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ModelVersionFilter

    def get_queryset(self):
        return selectors.model_version_list()


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(min_length=3, max_length=500)


class ModelVersionActionView(APIView):
    """POST /api/models/<id>/promote or /retire with {"reason": "..."} (staff only)."""

    permission_classes = [IsAdminUser]
    action: str = ""

    def post(self, request, pk: int):
        from ai import registry

        body = StatusChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = f"{body.validated_data['reason']} (by {request.user.username} via API)"
        try:
            mv = (registry.promote if self.action == "promote" else registry.retire)(pk, reason=reason)
        except registry.RegistryError as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response(ModelVersionSerializer(mv).data)


class MetaStrategyDecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetaStrategyDecision
        fields = ["id", "created_at", "symbol", "timeframe", "regime", "group", "profile", "fallback", "reason",
                  "ensemble_threshold", "horizon_bars", "execution_strategy", "trade", "trace_id", "position_id",
                  "reward", "pnl_usd", "notional_usd", "rewarded_at"]


class MetaStrategyDecisionListView(ListAPIView):
    """The meta-strategy's profile choices, newest first, with the reward once the position closed;
    filter with ?symbol=, ?profile=, ?regime=, ?group=, ?fallback=, ?trace_id=."""

    serializer_class = MetaStrategyDecisionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["symbol", "profile", "regime", "group", "fallback", "trace_id"]

    def get_queryset(self):
        return MetaStrategyDecision.objects.order_by("-created_at", "symbol")


class MetaStrategyStateSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    rewards_applied = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    default_profile = serializers.CharField()
    min_pulls = serializers.IntegerField()
    confidence = serializers.FloatField()
    profiles = serializers.ListField(child=serializers.DictField(), help_text="the menu: threshold, horizon, "
                                     "execution strategy, trade")
    arms = serializers.ListField(child=serializers.DictField(), help_text="per (regime, group, profile): n, mean "
                                 "and sd of the rewards, posterior mean and sd")
    choices = serializers.ListField(child=serializers.DictField(), help_text="per context seen: the profile it "
                                    "would choose now, whether that is the fallback, and why")


class MetaStrategyStateView(APIView):
    """The meta-strategy agent: on or off, its statistics per (regime, group, profile) and what it
    would choose in each context it has seen (read-only)."""

    @extend_schema(responses=MetaStrategyStateSerializer)
    def get(self, request):
        from ai.meta.services import state_summary

        return Response(MetaStrategyStateSerializer(state_summary()).data)
