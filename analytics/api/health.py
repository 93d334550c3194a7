"""The health graph and self-healing over HTTP (reads for any signed-in user, the resume for staff).

GET  /api/health/graph/            the latest health graph the monitor stored, with its age; built
                                   now (and "stored": false) when the monitor has not stored one
GET  /api/health/transitions/      status changes of the graph's components, newest first
                                   (?component=queue:inference ?status=CRITICAL ?since=<ISO 8601>)
GET  /api/health/healing/          self-healing actions, newest first (?kind= ?target= ?outcome=)
POST /api/health/healing/resume/   {"queue": "inference", "reason": "..."} (staff): self-healing
                                   restarts that worker again after it gave up on it -> 201 the
                                   RESUME action; 400 {"queue": [...]} for an unknown queue; 409
                                   when self-healing has not given up on that queue
"""
from __future__ import annotations

from datetime import UTC, datetime

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response

from analytics.filters import HealingActionFilter, HealthTransitionFilter
from analytics.models import HealingAction, HealthTransition
from qtweb.queues import Queue

ON_REQUEST = "built on request (the monitor has not stored one)"


# --- the graph -----------------------------------------------------------------------------


class HealthGraphSerializer(serializers.Serializer):
    """The graph as analytics/health/graph.py documents it; the parts are passed through as built."""

    status = serializers.CharField(help_text="HEALTHY, DEGRADED or CRITICAL: the worst of the parts")
    reasons = serializers.ListField(child=serializers.CharField())
    generated_at = serializers.DateTimeField()
    age_seconds = serializers.FloatField(help_text="how old the graph is now")
    stored = serializers.BooleanField(help_text="false: the monitor had not stored a graph, this one was built now")
    source = serializers.CharField()
    dependencies = serializers.DictField(help_text="database, redis: {status, latency_ms | error}")
    queues = serializers.DictField(help_text="per queue: depth, oldest_age_seconds, heartbeat_age_seconds, "
                                             "workers, live_workers, status, reasons")
    workers = serializers.DictField(help_text="per worker: pid, host, heartbeat_age_seconds, memory_percent, "
                                              "rss_mb, status, reasons")
    services = serializers.DictField(help_text="per service: status, reasons, enabled, shadow, queues, modules")
    processes = serializers.DictField(required=False, help_text="the process manager's view of each program")
    process_manager = serializers.DictField(required=False, help_text="{name, error}")
    healing = serializers.ListField(child=serializers.DictField(), required=False,
                                    help_text="what self-healing did in the monitor pass that built the graph")


def _graph_now() -> dict:
    """A graph built in this request, in the shape the monitor stores (with the process manager's view)."""
    from analytics.healing.service import overlay_processes
    from analytics.health import graph as health_graph

    g = health_graph.build()
    overlay_processes(g)
    health_graph.summarize(g)
    return g


def latest_graph() -> dict:
    """The graph the monitor stored last, or one built now; with its age and where it came from
    (the admin's graph page shows the same)."""
    from analytics.health import graph as health_graph

    g = health_graph.latest()
    stored = g is not None
    if g is None:
        g = _graph_now()
    age = (datetime.now(UTC) - datetime.fromisoformat(g["generated_at"])).total_seconds()
    return {**g, "age_seconds": round(age, 1), "stored": stored, "source": "monitor" if stored else ON_REQUEST}


class HealthGraphView(GenericAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = HealthGraphSerializer
    pagination_class = None

    def get(self, request):
        return Response(latest_graph())


# --- transitions ---------------------------------------------------------------------------


class HealthTransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = HealthTransition
        fields = ["id", "component", "previous_status", "status", "reasons", "at", "trace_id"]


class HealthTransitionListView(ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = HealthTransitionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = HealthTransitionFilter

    def get_queryset(self):
        return HealthTransition.objects.order_by("-at", "-pk")


# --- self-healing --------------------------------------------------------------------------


class HealingActionSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", default=None, read_only=True, allow_null=True)

    class Meta:
        model = HealingAction
        fields = ["id", "kind", "target", "trigger", "details", "outcome", "result", "rule", "rule_name", "shadow",
                  "created_at", "trace_id"]


class HealingActionListView(ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = HealingActionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = HealingActionFilter

    def get_queryset(self):
        return HealingAction.objects.select_related("rule").order_by("-created_at", "-pk")


QUEUES = [q.value for q in Queue]


class ResumeRequestSerializer(serializers.Serializer):
    queue = serializers.CharField(max_length=32, help_text=f"the worker's queue: one of {', '.join(QUEUES)}")
    reason = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)

    def validate_queue(self, value: str) -> str:
        if value not in QUEUES:
            raise serializers.ValidationError(f"one of {', '.join(QUEUES)}, got {value!r}")
        return value


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()


class HealingResumeView(GenericAPIView):
    """Staff only: the worker self-healing stopped restarting (it kept dying) is started again and
    self-healing looks after it again. Done after an operator fixed what made it die."""

    permission_classes = [IsAdminUser]
    serializer_class = ResumeRequestSerializer

    @extend_schema(request=ResumeRequestSerializer,
                   responses={201: HealingActionSerializer,
                              400: OpenApiResponse(description="{field: [why]}, e.g. an unknown queue"),
                              409: ConflictSerializer})
    def post(self, request):
        from analytics.healing import service

        body = ResumeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        queue = body.validated_data["queue"]
        if service.given_up(queue) is None:
            return Response({"detail": f"self-healing has not given up on the {queue} worker: nothing to resume"},
                            status=409)
        action = service.resume(queue, by=request.user.get_username(),
                                reason=body.validated_data["reason"] or "resumed over the API")
        return Response(HealingActionSerializer(action).data, status=201)
