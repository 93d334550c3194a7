"""The risk app's HTTP API under /api/risk/ (reads: any authenticated user, the DRF default;
writes: staff only). Every write goes through the risk services, so the API records exactly
what the admin and the workers record: a new policy version + `policy.updated`, a ModeChange
row + `system.mode_changed`, the emergency stop's HALT + `emergency.stop`.
"""
from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.enums import Side, choices
from risk import selectors
from risk.domain.modes import MIN_REASON_CHARS, Mode, ModeTransitionError
from risk.domain.policy import PolicyError
from risk.filters import RiskDecisionFilter
from risk.models import ModeChange, RiskDecision, RiskPolicy

MODE_HISTORY = 20


def _reason_error(reason) -> str | None:
    if not isinstance(reason, str) or len("".join(reason.split())) < MIN_REASON_CHARS:
        return f"a reason of at least {MIN_REASON_CHARS} non-space characters is required"
    return None


class ReadAuthenticatedWriteStaff(APIView):
    """GET/HEAD/OPTIONS for any authenticated user; every other method for staff only."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsAuthenticated()]
        return [IsAdminUser()]


# --- policy --------------------------------------------------------------------------------


class RiskPolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = RiskPolicy
        fields = ["version", "values", "changed_fields", "created_by", "created_at", "reason", "trace_id"]


class PolicyChangeSerializer(serializers.Serializer):
    changes = serializers.DictField(help_text="policy field -> new value (see risk/domain/policy.py)")
    reason = serializers.CharField(max_length=2000)


class PolicyView(ReadAuthenticatedWriteStaff):
    """GET: the policy in force. PUT/PATCH {"changes": {...}, "reason": "..."} (staff): a new
    version (201); 400 {"errors": {field: why}} naming every bad field, nothing written."""

    serializer_class = RiskPolicySerializer

    def get(self, request):
        from risk.services.policy import policy_current_row

        return Response(RiskPolicySerializer(policy_current_row()).data)

    def put(self, request):
        from risk.services.policy import policy_update

        body = request.data if isinstance(request.data, dict) else {}
        errors: dict[str, str] = {}
        changes = body.get("changes")
        if not isinstance(changes, dict) or not changes:
            errors["changes"] = "an object of policy field -> new value, with at least one field"
        elif "version" in changes:
            errors["version"] = "versions are numbered by the server (the next one is created for you)"
        reason = body.get("reason")
        if err := _reason_error(reason):
            errors["reason"] = err
        unexpected = sorted(k for k in body if k not in ("changes", "reason"))
        if unexpected:
            errors["body"] = f"unknown key(s) {', '.join(unexpected)}; expected only changes and reason"
        if errors:
            return Response({"errors": errors}, status=400)
        try:
            row = policy_update(changes=changes, updated_by=request.user.get_username(), reason=reason.strip())
        except PolicyError as exc:
            return Response({"errors": exc.errors or {"changes": str(exc)}, "detail": str(exc)}, status=400)
        return Response(RiskPolicySerializer(row).data, status=201)

    patch = put


class PolicyVersionListView(ListAPIView):
    """Every policy version, newest first (paginated)."""

    serializer_class = RiskPolicySerializer

    def get_queryset(self):
        return selectors.policy_version_list()


# --- modes ---------------------------------------------------------------------------------


class ModeChangeSerializer(serializers.ModelSerializer):
    # one enum in the OpenAPI schema (ModeEnum) for every mode field
    previous_mode = serializers.CharField(read_only=True, help_text="NORMAL, SHADOW, REDUCE_ONLY or HALTED")

    class Meta:
        model = ModeChange
        fields = ["id", "previous_mode", "mode", "reason", "changed_by", "by_operator", "created_at", "trace_id"]


class ModeSetSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=[m.value for m in Mode])
    reason = serializers.CharField(max_length=2000)


class ModeView(ReadAuthenticatedWriteStaff):
    """GET: the system mode and its last 20 changes. POST {"mode", "reason"} (staff): change it;
    400 for a malformed body, 409 for a transition the rules forbid (the message says which are allowed)."""

    serializer_class = ModeChangeSerializer

    def get(self, request):
        from risk.services.modes import mode_get

        history = list(ModeChange.objects.order_by("-created_at", "-pk")[:MODE_HISTORY])
        return Response({
            "mode": mode_get().value,
            "changed_at": history[0].created_at.isoformat() if history else None,
            "changes": ModeChangeSerializer(history, many=True).data,
        })

    def post(self, request):
        from risk.services.modes import mode_set

        body = request.data if isinstance(request.data, dict) else {}
        errors: dict[str, str] = {}
        target = body.get("mode")
        if target not in {m.value for m in Mode}:
            errors["mode"] = f"one of {', '.join(m.value for m in Mode)}, got {target!r}"
        if err := _reason_error(body.get("reason")):
            errors["reason"] = err
        if errors:
            return Response({"errors": errors, "detail": "; ".join(f"{k}: {v}" for k, v in errors.items())},
                            status=400)
        try:
            row = mode_set(target=target, reason=body["reason"], changed_by=request.user.get_username(),
                           by_operator=True)
        except ModeTransitionError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response({"mode": row.mode, "change": ModeChangeSerializer(row).data})


class EmergencyStopSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
    flatten = serializers.BooleanField(allow_null=True, required=False, default=None)


class EmergencyStopView(APIView):
    """POST {"reason": "...", "flatten": true|false|null} (staff): HALT now, publish emergency.stop
    (the execution worker cancels open orders and, if flatten (null: as the policy says), closes
    every position). 200 {"halted": true, "already_halted": bool}."""

    permission_classes = [IsAdminUser]
    serializer_class = EmergencyStopSerializer

    def post(self, request):
        from risk.services.governor import emergency_stop

        body = request.data if isinstance(request.data, dict) else {}
        errors: dict[str, str] = {}
        reason = body.get("reason")
        if err := _reason_error(reason):
            errors["reason"] = err
        flatten = body.get("flatten")
        if flatten is not None and not isinstance(flatten, bool):
            errors["flatten"] = f"true, false or null (null: as the policy says), got {flatten!r}"
        if errors:
            return Response({"errors": errors, "detail": "; ".join(f"{k}: {v}" for k, v in errors.items())},
                            status=400)
        try:
            stopped = emergency_stop(reason=reason, triggered_by=request.user.get_username(), by_operator=True,
                                     flatten=flatten)
        except ModeTransitionError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response({"halted": True, "already_halted": not stopped})


# --- decisions and what-if -----------------------------------------------------------------


class RiskDecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RiskDecision
        fields = ["id", "created_at", "trace_id", "intent_key", "source", "symbol", "side", "size_usd", "leverage",
                  "reduce_only", "confidence", "approved", "reasons", "max_allowed_size_usd", "policy_version",
                  "mode", "snapshot"]


class RiskDecisionListView(ListAPIView):
    """Every verdict of the risk validator, newest first; filter with ?symbol= and ?approved=true|false."""

    serializer_class = RiskDecisionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = RiskDecisionFilter

    def get_queryset(self):
        return selectors.risk_decision_list()


class ValidateRiskSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    size_usd = serializers.CharField()
    leverage = serializers.IntegerField(default=1)
    side = serializers.ChoiceField(choices=choices(Side), default=Side.BUY)


class ValidateRiskView(APIView):
    """POST {"symbol", "size_usd", "leverage", "side"}: what the validator would say about that
    entry now (nothing is recorded). 400 names a malformed argument. Staff only: it reads the
    account on the exchange (rate-limit weight) like a real decision."""

    serializer_class = ValidateRiskSerializer
    permission_classes = [IsAdminUser]

    def post(self, request):
        from risk.services.queries import validate_risk

        body = request.data if isinstance(request.data, dict) else {}
        if "symbol" not in body or "size_usd" not in body:
            missing = [k for k in ("symbol", "size_usd") if k not in body]
            return Response({"detail": f"missing {', '.join(missing)}"}, status=400)
        try:
            result = validate_risk(symbol=body["symbol"], size_usd=body["size_usd"],
                                   leverage=body.get("leverage", 1), side=body.get("side", Side.BUY))
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response(result)
