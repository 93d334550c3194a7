"""The learning manager's HTTP API (authenticated; requesting a retrain is for staff).

GET  /api/learning/jobs/           retraining jobs (?model_type= ?status= ?trigger=)
POST /api/learning/jobs/           {"model_id": <version id or type>, "reason": "..."} -> 201 the job
GET  /api/learning/jobs/<id>/      one job: status, stage, both scores, the decision, the error
GET  /api/learning/drift/          the latest drift score of every champion, with its parts
GET  /api/learning/drift/checks/   every drift check (?model_type= ?detected=)
"""
from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.filters import DriftCheckFilter, RetrainingJobFilter
from analytics.models import DriftCheck, RetrainingJob


class RetrainingJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = RetrainingJob
        fields = ["id", "model_type", "trigger", "status", "stage", "attempts", "requested_at", "requested_by",
                  "reason", "started_at", "finished_at", "champion", "challenger", "champion_score",
                  "challenger_score", "decision", "result", "error", "trace_id"]


class RetrainRequestSerializer(serializers.Serializer):
    model_id = serializers.CharField(max_length=32, help_text="a model version id, or a model type (xgboost, ...)")
    reason = serializers.CharField(max_length=300, required=False, default="")


class RetrainingJobListView(ListAPIView):
    serializer_class = RetrainingJobSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = RetrainingJobFilter

    def get_permissions(self):  # reads for any signed-in user, requests for staff (as trading's orders)
        if self.request.method == "POST":
            return [IsAdminUser()]
        return [IsAuthenticated()]

    def get_queryset(self):
        return selectors.retraining_job_list()

    def post(self, request):
        from analytics.learning import jobs

        body = RetrainRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"] or "requested over the API"
        try:
            job = jobs.request_retraining(model_type=jobs.model_type_for(body.validated_data["model_id"]),
                                          trigger="manual", reason=reason, requested_by=request.user.username)
        except jobs.JobAlreadyActive as exc:
            return Response({"detail": str(exc), "job": RetrainingJobSerializer(exc.job).data}, status=409)
        except jobs.RetrainingRefused as exc:
            return Response({"model_id": [str(exc)]}, status=400)
        return Response(RetrainingJobSerializer(job).data, status=201)


class RetrainingJobDetailView(RetrieveAPIView):
    serializer_class = RetrainingJobSerializer

    def get_queryset(self):
        return selectors.retraining_job_list()


class DriftSummaryView(APIView):
    def get(self, request):
        from analytics.learning.monitor import drift_summary

        return Response(drift_summary())


class DriftCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftCheck
        fields = ["id", "model_type", "model_version", "checked_at", "drift_score", "threshold", "detected", "parts",
                  "top_features", "missing", "n_feature_rows", "n_predictions", "n_outcomes", "action", "job"]


class DriftCheckListView(ListAPIView):
    serializer_class = DriftCheckSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = DriftCheckFilter

    def get_queryset(self):
        return selectors.drift_check_list()
