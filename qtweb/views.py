"""Platform HTTP endpoints: /health and /metrics (public), the trace lookup API."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from qtweb import metrics
from qtweb.events.bus import events_for_trace
from qtweb.events.models import Event, EventDelivery
from qtweb.health.status import web_health
from qtweb.tracing import is_valid_trace_id


@require_GET
def health(request):
    """Public: the web's health and every service with its last heartbeat age. 503 when CRITICAL."""
    body, status = web_health()
    return JsonResponse(body, status=status)


@require_GET
def metrics_view(request):
    """Public unless METRICS_TOKEN is set (then `Authorization: Bearer <token>`)."""
    if settings.METRICS_TOKEN and request.headers.get("Authorization") != f"Bearer {settings.METRICS_TOKEN}":
        return HttpResponse("metrics require the bearer token\n", status=401, content_type="text/plain")
    text, ctype = metrics.render("web")
    return HttpResponse(text, content_type=ctype)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = EventDelivery
        fields = ["subscriber", "queue", "status", "attempts", "dispatch_count", "last_error", "processed_at",
                  "processed_by"]


class EventSerializer(serializers.ModelSerializer):
    deliveries = DeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Event
        fields = ["event_id", "type", "version", "trace_id", "source", "timestamp", "payload", "deliveries"]


class TraceView(APIView):
    """Every event of one trace, in order, with where each was delivered."""

    serializer_class = EventSerializer

    def get(self, request, trace_id: str):
        if not is_valid_trace_id(trace_id):
            return Response({"trace_id": ["8-64 characters of letters, digits, _ . : -"]}, status=400)
        events = list(events_for_trace(trace_id))
        if not events:
            return Response({"detail": f"no events with trace_id {trace_id}"}, status=404)
        return Response({"trace_id": trace_id, "count": len(events),
                         "events": EventSerializer(events, many=True).data})


class EventListView(ListAPIView):
    """Recent events, newest first; filter with ?type= and ?trace_id=."""

    serializer_class = EventSerializer

    def get_queryset(self):
        qs = Event.objects.prefetch_related("deliveries").order_by("-timestamp")
        if t := self.request.query_params.get("type"):
            qs = qs.filter(type=t)
        if tid := self.request.query_params.get("trace_id"):
            qs = qs.filter(trace_id=tid)
        return qs
