"""The trading app's HTTP API under /api/trading/ (reads: any authenticated user; the manual
order: staff only). Positions, orders, intents and reconciliation runs of the execution
exchange; POST orders/ publishes `execution.request`, which the execution worker turns into an
intent on the same risk path as a signal (nothing trades in the web process).
"""
from __future__ import annotations

import uuid

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.enums import OrderType, Side, choices
from trading import selectors
from trading.filters import ExecutionIntentFilter, OrderFilter, PositionFilter, ReconciliationRunFilter
from trading.models import ExecutionIntent, Order, ReconciliationRun


def _exchange() -> str:
    from trading.exchanges.account import exchange_id

    return exchange_id()


# --- positions -----------------------------------------------------------------------------


class PositionSerializer(serializers.Serializer):
    """position_dict() of trading/positions/queries.py (the RPC's shape)."""

    def to_representation(self, instance):
        from trading.positions.queries import position_dict

        return position_dict(instance)


class PositionListView(ListAPIView):
    """Positions on the execution exchange, newest first; ?status=open|closed, ?symbol=."""

    serializer_class = PositionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = PositionFilter

    def get_queryset(self):
        return selectors.position_list(exchange=_exchange())


class PositionStatusView(APIView):
    """GET positions/<symbol>/ (the symbol as is: BTC/USDT:USDT) or positions/status/?symbol=:
    {"symbol", "open", "position", "last_closed"}."""

    serializer_class = PositionSerializer

    def get(self, request, symbol: str | None = None):
        from trading.positions.queries import position_status

        symbol = symbol or request.query_params.get("symbol") or ""
        try:
            return Response(position_status(symbol))
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)


# --- orders, intents, reconciliation -------------------------------------------------------


class OrderSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="symbol.symbol")
    intent_key = serializers.CharField(source="intent.intent_key", default=None)

    class Meta:
        model = Order
        fields = ["id", "created_at", "updated_at", "exchange", "client_order_id", "exchange_order_id", "symbol",
                  "side", "type", "amount", "price", "filled", "average_price", "fee_usd", "status", "status_reason",
                  "reduce_only", "leverage", "strategy", "origin", "slice_index", "intent_key", "policy_version",
                  "submit_attempts", "acknowledged_at", "trace_id"]


class ExecutionIntentSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="symbol.symbol")

    class Meta:
        model = ExecutionIntent
        fields = ["id", "created_at", "updated_at", "intent_key", "source", "exchange", "symbol", "side", "amount",
                  "size_usd", "leverage", "reduce_only", "order_type", "limit_price", "requested_strategy", "strategy",
                  "params", "status", "reason", "arrival_price", "filled_amount", "average_price", "fees_usd",
                  "slippage_pct", "confidence", "entry_model", "stop_loss_price", "take_profit_price",
                  "exit_reason", "position_id", "policy_version", "risk_decision_id", "created_by", "trace_id"]


class ReconciliationRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReconciliationRun
        fields = ["id", "exchange", "worker", "reason", "started_at", "finished_at", "ok", "mismatches", "actions",
                  "error", "trace_id"]


class ManualOrderSerializer(serializers.Serializer):
    """The body of POST orders/: the ExecutionRequest event's fields (qtweb/events/schemas.py);
    client_order_id is optional (generated), requested_by is the logged-in user."""

    client_order_id = serializers.CharField(required=False)
    symbol = serializers.CharField()
    side = serializers.ChoiceField(choices=choices(Side))
    order_type = serializers.ChoiceField(choices=choices(OrderType))
    amount = serializers.DecimalField(max_digits=38, decimal_places=12)
    price = serializers.DecimalField(max_digits=30, decimal_places=12, required=False, allow_null=True)
    reduce_only = serializers.BooleanField(required=False)
    leverage = serializers.IntegerField(required=False, default=1)
    strategy = serializers.CharField(required=False)
    slices = serializers.IntegerField(required=False, allow_null=True)
    duration_seconds = serializers.FloatField(required=False, allow_null=True)
    limit_timeout_seconds = serializers.FloatField(required=False, allow_null=True)
    on_timeout = serializers.ChoiceField(choices=["cancel", "reprice"], required=False)
    stop_loss_price = serializers.DecimalField(max_digits=30, decimal_places=12, required=False, allow_null=True)
    take_profit_price = serializers.DecimalField(max_digits=30, decimal_places=12, required=False, allow_null=True)


class ManualOrderAcceptedSerializer(serializers.Serializer):
    client_order_id = serializers.CharField()
    trace_id = serializers.CharField()
    event_id = serializers.UUIDField()


def new_client_order_id() -> str:
    return f"man-{uuid.uuid4().hex[:20]}"


def manual_order_errors(body: dict, username: str) -> tuple[dict, dict[str, str]]:
    """(the execution.request payload, {field: why}); the payload is publishable when no errors.

    Checks, all reported at once: the ExecutionRequest schema (types, positive amount and prices,
    leverage 1..125, a limit order's price), a symbol the execution exchange knows, leverage
    within the policy in force, a client_order_id not used before.
    """
    from qtweb.events.schemas import EventValidationError, validate_payload
    from risk.services.policy import policy_get
    from trading.models import Symbol

    payload = {k: v for k, v in body.items() if k != "requested_by"}
    if payload.get("client_order_id") in (None, ""):
        payload["client_order_id"] = new_client_order_id()
    payload["requested_by"] = username[:150]
    errors: dict[str, str] = {}
    try:
        validate_payload("execution.request", payload)
    except EventValidationError as exc:
        for e in exc.errors:
            field = e["field"].removeprefix("payload.")
            field = "body" if field in ("(root)", "payload") else field
            errors.setdefault(field, e["message"])
    symbol = payload.get("symbol")
    if "symbol" not in errors and isinstance(symbol, str):
        exchange = _exchange()
        if not Symbol.objects.filter(exchange=exchange, symbol=symbol).exists():
            errors["symbol"] = f"unknown symbol {symbol!r} on {exchange}"
    if "leverage" not in errors and payload.get("leverage") is not None:
        try:
            leverage = int(payload["leverage"])
        except (TypeError, ValueError):
            leverage = None
        policy = policy_get()
        if leverage is not None and leverage > policy.max_leverage:
            errors["leverage"] = (f"leverage {leverage} is above the policy's max_leverage {policy.max_leverage} "
                                  f"(policy v{policy.version})")
    coid = payload.get("client_order_id")
    if "client_order_id" not in errors and ExecutionIntent.objects.filter(intent_key=f"manual:{coid}").exists():
        errors["client_order_id"] = f"{coid!r} was already used by an earlier manual order"
    return payload, errors


class OrderListView(ListAPIView):
    """GET: orders on the execution exchange, newest first; ?status=, ?symbol=, ?client_order_id=.
    POST (staff): a manual order, published as `execution.request` (202 with client_order_id and
    trace_id); 400 {"errors": {field: why}} and nothing published when invalid."""

    serializer_class = OrderSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = OrderFilter

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAdminUser()]
        return [IsAuthenticated()]

    def get_serializer_class(self):
        if self.request is not None and self.request.method == "POST":
            return ManualOrderSerializer
        return OrderSerializer

    def get_queryset(self):
        return selectors.order_list(exchange=_exchange())

    def post(self, request):
        from qtweb.events.bus import publish

        data = request.data
        if hasattr(data, "dict"):  # a form post (QueryDict): one value per field
            data = data.dict()
        if not isinstance(data, dict):
            return Response({"errors": {"body": "a JSON object with the order's fields"}}, status=400)
        payload, errors = manual_order_errors(dict(data), request.user.get_username())
        if errors:
            return Response({"errors": errors, "detail": "; ".join(f"{k}: {v}" for k, v in errors.items())},
                            status=400)
        envelope = publish("execution.request", payload)
        return Response({"client_order_id": payload["client_order_id"], "trace_id": envelope.trace_id,
                         "event_id": str(envelope.event_id)}, status=202)


class ExecutionIntentListView(ListAPIView):
    """Execution intents, newest first; ?status=, ?source=, ?symbol=, ?trace_id=."""

    serializer_class = ExecutionIntentSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExecutionIntentFilter

    def get_queryset(self):
        return selectors.execution_intent_list()


class ReconciliationRunListView(ListAPIView):
    """Reconciliation runs, newest first; ?ok=true|false."""

    serializer_class = ReconciliationRunSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ReconciliationRunFilter

    def get_queryset(self):
        return selectors.reconciliation_run_list()
