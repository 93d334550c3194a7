"""The ai app's HTTP API (authenticated, the DRF default): evaluation reports and the model
registry (list; promote and retire for staff, through ai.registry)."""
from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from ai import selectors
from ai.filters import ModelVersionFilter
from ai.models import EvaluationReport, ModelVersion


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
