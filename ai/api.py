"""The ai app's HTTP API: the evaluation reports (authenticated, the DRF default)."""
from __future__ import annotations

from rest_framework import serializers
from rest_framework.generics import ListAPIView

from ai.models import EvaluationReport


class EvaluationReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvaluationReport
        fields = ["id", "created_at", "path", "summary", "params"]


class EvaluationReportListView(ListAPIView):
    """Runs of manage.py evaluate_models, newest first: report folder, verdict, headline figures."""

    serializer_class = EvaluationReportSerializer
    queryset = EvaluationReport.objects.order_by("-created_at")
