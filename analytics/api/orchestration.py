"""The orchestrator over HTTP (reads for any signed-in user).

GET /api/orchestration/portfolio/         positions with their intelligence, exposures per symbol and
                                          sector, the balancer's caps, HFOS's last decision (the RPC
                                          get_portfolio_state's answer)
GET /api/orchestration/decisions/         HFOS decisions, newest first, each with every directive it
                                          accepted or overruled (with what beat it and why)
                                          (?trace_id= ?layer=pal ?outcome=overruled ?since=<ISO 8601>)
GET /api/orchestration/decisions/<id>/    one decision
GET /api/orchestration/positions/         position intelligence: class, score, reasons
                                          (?open=true ?label=at_risk ?symbol=)
"""
from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.generics import GenericAPIView, ListAPIView, RetrieveAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from analytics.filters import HfosDecisionFilter, PositionAssessmentFilter
from analytics.models import HfosDecision, HfosDirective, PositionAssessment


class PortfolioStateSerializer(serializers.Serializer):
    caps = serializers.DictField()
    enabled = serializers.DictField(help_text="which layers run: pba, pal, pil")
    hierarchy = serializers.ListField(child=serializers.CharField(), help_text="HFOS priority, highest first")
    as_of = serializers.DateTimeField()
    last_decision = serializers.DictField(allow_null=True)
    positions = serializers.ListField(child=serializers.DictField())
    state_unknown = serializers.CharField(required=False, help_text="why exposures are left out")
    equity_usd = serializers.CharField(required=False)
    exposures_usd = serializers.DictField(required=False)
    sector_exposures_usd = serializers.DictField(required=False)
    sector_exposures_pct = serializers.DictField(required=False)


class PortfolioStateView(GenericAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = PortfolioStateSerializer
    pagination_class = None

    def get(self, request):
        from analytics.orchestration.service import portfolio_state

        return Response(portfolio_state())


class HfosDirectiveSerializer(serializers.ModelSerializer):
    class Meta:
        model = HfosDirective
        fields = ["layer", "kind", "symbol", "amount_usd", "reason", "outcome", "overruled_by", "why", "position_id",
                  "event_id"]


class HfosDecisionSerializer(serializers.ModelSerializer):
    directives = HfosDirectiveSerializer(many=True, read_only=True)

    class Meta:
        model = HfosDecision
        fields = ["id", "trigger", "created_at", "trace_id", "hierarchy", "accepted_count", "overruled_count",
                  "skipped", "portfolio", "directives"]


class HfosDecisionListView(ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = HfosDecisionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = HfosDecisionFilter

    def get_queryset(self):
        return HfosDecision.objects.prefetch_related("directives").order_by("-created_at", "-pk")


class HfosDecisionDetailView(RetrieveAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = HfosDecisionSerializer
    queryset = HfosDecision.objects.prefetch_related("directives")


class PositionAssessmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = PositionAssessment
        fields = ["position_id", "symbol", "label", "score", "pnl_pct", "reasons", "open", "assessed_at", "trace_id"]


class PositionAssessmentListView(ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = PositionAssessmentSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = PositionAssessmentFilter

    def get_queryset(self):
        return PositionAssessment.objects.order_by("-assessed_at", "-pk")
