"""Every event type of the design and its payload, as pydantic v2 models.

An event is an envelope (event_id, type, version, trace_id, source, timestamp) around a
payload. Payload models forbid unknown fields and carry the constraints a consumer relies on
(confidence in [0, 1], positive sizes, enums for sides and statuses, unified symbol format),
so a bad event is refused at publish time with the field named, never half-handled later.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.enums import (
    CloseReason,
    ExecutionStatus,
    ExecutionStrategy,
    Mode,
    OrderType,
    PositionSide,
    Severity,
    Side,
    SignalAction,
    Timeframe,
)
from core.limits import NAME_MAX, TEXT_MAX, USER_MAX
from qtweb.tracing import is_valid_trace_id

# --- shared field types ------------------------------------------------------------------

# ccxt unified symbols: BASE/QUOTE for spot, BASE/QUOTE:SETTLE for perpetuals.
SYMBOL_PATTERN = r"^[A-Z0-9]{2,20}/[A-Z0-9]{2,10}(:[A-Z0-9]{2,10})?$"
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, examples=["BTC/USDT", "ETH/USDT:USDT"])]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
SignedDecimal = Annotated[Decimal, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]


class HealthState(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    CRITICAL = "CRITICAL"
    DISABLED = "DISABLED"  # switched off by its *_SERVICE_ENABLED setting: not a fault

    @classmethod
    def _missing_(cls, value):  # payloads stored before CRITICAL replaced UNHEALTHY
        return cls.CRITICAL if value == "UNHEALTHY" else None


class LearningKind(StrEnum):
    DRIFT_DETECTED = "drift_detected"
    RETRAIN_STARTED = "retrain_started"
    RETRAIN_COMPLETED = "retrain_completed"
    RETRAIN_FAILED = "retrain_failed"
    MODEL_PROMOTED = "model_promoted"
    MODEL_REJECTED = "model_rejected"
    MODEL_RETIRED = "model_retired"
    CHALLENGER_REJECTED = "challenger_rejected"
    MODEL_QUARANTINED = "model_quarantined"
    MODEL_RELEASED = "model_released"
    EXPERIENCE_RECORDED = "experience_recorded"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# --- payloads ----------------------------------------------------------------------------


class SignalGenerated(Payload):
    symbol: Symbol
    timeframe: Timeframe
    action: SignalAction
    confidence: Probability
    score: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    ensemble_agreement: Probability
    models_voted: int = Field(ge=0, le=32)
    min_confidence_threshold: Probability = 0.6
    price: PositiveDecimal | None = None
    model_versions: dict[str, str] = Field(default_factory=dict)


class ModelPrediction(Payload):
    symbol: Symbol
    timeframe: Timeframe
    model: Name
    model_version: Name
    prob_up: Probability
    prob_down: Probability
    latency_ms: NonNegativeFloat
    bar_open_time: UtcDatetime | None = None  # the bar the prediction is made at (its outcome is scored later)

    @model_validator(mode="after")
    def _probabilities_sum(self) -> ModelPrediction:
        if self.prob_up + self.prob_down > 1.0 + 1e-6:
            raise ValueError("prob_up + prob_down must not exceed 1")
        return self


class RlDecisionV1(Payload):
    """rl.decision as first published: it names no signal, so execution had to look the signal up
    by trace id. Still parsed (stored events, replays); execution refuses to trade on it."""

    symbol: Symbol
    action: SignalAction
    agent_action: Probability  # fraction of the allowed size the agent chose
    kelly_fraction: Probability
    final_size_usd: NonNegativeDecimal
    agent_trained: bool
    reason: Text


class RlDecision(Payload):
    """The sized decision on one signal, carrying what execution needs from that signal (its
    event id keys the intent, so the same signal sized twice still trades once). A size of 0
    with its `reason` is a decision too: HOLD, no edge, or an account snapshot that is missing
    or stale (`account_snapshot_age_seconds` says how old it was)."""

    symbol: Symbol
    action: SignalAction
    agent_action: Probability
    kelly_fraction: Probability
    final_size_usd: NonNegativeDecimal
    agent_trained: bool
    reason: Text
    signal_event_id: uuid.UUID
    confidence: Probability
    reference_price: PositiveDecimal | None = None  # the price the signal saw (the collar checks it)
    model_versions: dict[str, str] = Field(default_factory=dict)
    account_snapshot_age_seconds: NonNegativeFloat | None = None
    # Decided by an ai-service in SHADOW (AI_SERVICE_SHADOW): recorded, never traded by execution.
    shadow: bool = False
    # The meta-strategy's profile for this symbol (ai/meta; absent when RL_META_STRATEGY_ENABLED is
    # off): execution trades with its strategy and keeps its horizon on the intent. `profile_fallback`:
    # the fixed default profile, because the agent was untrained or unsure.
    profile: Name | None = None
    profile_fallback: bool = False
    execution_strategy: ExecutionStrategy | None = None
    horizon_bars: int | None = Field(default=None, ge=1, le=10_000)


class UniverseOpportunity(Payload):
    symbol: Symbol
    rank: int = Field(ge=1)
    score: float = Field(allow_inf_nan=False)
    quote_volume_usd: NonNegativeDecimal
    atr_pct: NonNegativeFloat
    realized_volatility: NonNegativeFloat
    trend_strength: float = Field(allow_inf_nan=False)


class ExecutionRequest(Payload):
    """A manual order from an operator; it goes through the same risk path as a signal."""

    client_order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,36}$")]
    symbol: Symbol
    side: Side
    order_type: OrderType
    amount: PositiveDecimal
    price: PositiveDecimal | None = None
    reduce_only: bool = False
    leverage: int = Field(default=1, ge=1, le=125)
    strategy: ExecutionStrategy | None = None  # None: limit for a limit order, market otherwise
    slices: int | None = Field(default=None, ge=1, le=999)
    duration_seconds: float | None = Field(default=None, ge=0, le=86_400, allow_inf_nan=False)
    limit_timeout_seconds: float | None = Field(default=None, gt=0, le=86_400, allow_inf_nan=False)
    on_timeout: Annotated[str, Field(pattern=r"^(cancel|reprice)$")] = "reprice"
    stop_loss_price: PositiveDecimal | None = None
    take_profit_price: PositiveDecimal | None = None
    requested_by: str = Field(default="", max_length=USER_MAX)

    @model_validator(mode="after")
    def _limit_needs_price(self) -> ExecutionRequest:
        if self.order_type is OrderType.LIMIT and self.price is None:
            raise ValueError("price is required for a limit order")
        if self.order_type is OrderType.LIMIT and self.strategy not in (None, ExecutionStrategy.LIMIT):
            raise ValueError(f"a limit order runs with strategy 'limit' (got {self.strategy.value!r}); "
                             "send a market order for twap, vwap or smart")
        if self.order_type is OrderType.MARKET and self.strategy is ExecutionStrategy.LIMIT:
            raise ValueError("strategy 'limit' needs order_type 'limit' and a price")
        return self


class ExecutionResult(Payload):
    """The outcome of one order (or of a whole sliced intent when `client_order_id` is the
    intent's last slice and `intent_complete` is true): the design's fields are the filled size
    (`filled_amount` base units, `filled_size_usd`) and price (`average_price`), the quantity
    asked (`requested_amount`), `leverage`, `slippage_pct` against the arrival price (positive =
    adverse) and the `exchange_order_id`."""

    client_order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,36}$")]
    exchange_order_id: str | None = None
    symbol: Symbol
    side: Side
    status: ExecutionStatus
    requested_amount: PositiveDecimal
    filled_amount: NonNegativeDecimal
    average_price: PositiveDecimal | None = None
    filled_size_usd: NonNegativeDecimal = Decimal("0")
    leverage: int = Field(default=1, ge=1, le=125)
    slippage_pct: float | None = Field(default=None, allow_inf_nan=False)
    fee_usd: NonNegativeDecimal = Decimal("0")
    strategy: str = Field(default=ExecutionStrategy.MARKET.value, max_length=16)
    intent_key: str = Field(default="", max_length=NAME_MAX)
    intent_complete: bool = True
    reason: str = ""

    @model_validator(mode="after")
    def _filled_within_requested(self) -> ExecutionResult:
        if self.filled_amount > self.requested_amount:
            raise ValueError("filled_amount must not exceed requested_amount")
        return self


class PositionOpened(Payload):
    position_id: Name
    symbol: Symbol
    side: PositionSide
    amount: PositiveDecimal
    entry_price: PositiveDecimal
    size_usd: NonNegativeDecimal = Decimal("0")
    leverage: int = Field(default=1, ge=1, le=125)
    stop_loss_price: PositiveDecimal | None = None
    take_profit_price: PositiveDecimal | None = None
    liquidation_price: PositiveDecimal | None = None
    entry_confidence: Probability | None = None
    entry_model: str = Field(default="", max_length=NAME_MAX)
    opened_at: UtcDatetime | None = None


class PositionClosed(Payload):
    """The design's fields: pnl_usd (realized, net of fees), pnl_pct (on margin), duration_seconds,
    exit_reason, entry_confidence, entry_model."""

    position_id: Name
    symbol: Symbol
    side: PositionSide
    amount: PositiveDecimal
    entry_price: PositiveDecimal
    exit_price: PositiveDecimal
    pnl_usd: SignedDecimal
    pnl_pct: float = Field(default=0.0, allow_inf_nan=False)
    fees_usd: NonNegativeDecimal = Decimal("0")
    exit_reason: CloseReason
    leverage: int = Field(default=1, ge=1, le=125)
    duration_seconds: NonNegativeFloat = 0.0
    entry_confidence: Probability | None = None
    entry_model: str = Field(default="", max_length=NAME_MAX)
    opened_at: UtcDatetime | None = None


class RiskAlert(Payload):
    """TRADE_BLOCKED (rejected=True) carries every failed rule in `reasons`."""

    severity: Severity
    rule: Name
    message: Text
    reasons: list[dict[str, str]] = Field(default_factory=list)
    max_allowed_size_usd: NonNegativeDecimal | None = None
    symbol: Symbol | None = None
    policy_version: int | None = Field(default=None, ge=1)
    rejected: bool = True


class EmergencyStop(Payload):
    reason: Text
    triggered_by: Name
    drawdown_pct: NonNegativeFloat | None = None
    consecutive_losses: int | None = Field(default=None, ge=0)
    flatten_positions: bool = True


class PolicyUpdated(Payload):
    policy_version: int = Field(ge=1)
    changed_fields: list[Name] = Field(min_length=1)
    updated_by: Name


class SystemModeChanged(Payload):
    previous_mode: Mode
    mode: Mode
    reason: Annotated[str, Field(min_length=3, max_length=TEXT_MAX)]
    changed_by: Name


class ServiceHeartbeat(Payload):
    service: Name
    queue: Name
    worker: Name
    host: Name
    pid: int = Field(gt=0)
    uptime_seconds: NonNegativeFloat
    cpu_percent: NonNegativeFloat
    memory_percent: float = Field(ge=0.0, le=100.0, allow_inf_nan=False)
    rss_mb: NonNegativeFloat
    active_tasks: int = Field(ge=0)
    events_processed_last_minute: int = Field(ge=0)


class ServiceHealth(Payload):
    status: HealthState
    heartbeat_age_seconds: NonNegativeFloat | None = None
    reason: str = ""


class HealthStatus(Payload):
    status: HealthState
    services: dict[str, ServiceHealth]
    reason: str = ""


class SystemAlert(Payload):
    severity: Severity
    component: Name
    message: Text
    service: Name | None = None


class LearningEventV1(Payload):
    """learning.event before the learning manager: no model id, job, drift parts or scores."""

    kind: LearningKind
    model_type: Name
    model_version: Name | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str = ""


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class LearningEvent(Payload):
    """What the registry and the learning manager did to a model.

    DRIFT_DETECTED carries `drift_score`, `threshold` and `parts` (each part of the score);
    MODEL_PROMOTED and CHALLENGER_REJECTED carry `champion_score` and `challenger_score`
    (the same measure on the same window, see analytics/learning/challenger.py); events about a
    retraining job carry its `job_id`."""

    kind: LearningKind
    model_type: Name
    model_version: Name | None = None
    model_id: int | None = Field(default=None, ge=1)
    job_id: int | None = Field(default=None, ge=1)
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    drift_score: NonNegativeFloat | None = None
    threshold: NonNegativeFloat | None = None
    parts: dict[str, FiniteFloat] = Field(default_factory=dict)
    champion_score: FiniteFloat | None = None
    challenger_score: FiniteFloat | None = None
    reason: str = Field(default="", max_length=TEXT_MAX)


class PortfolioBalance(Payload):
    """The balancer's decision. `directives` are what execution acts on (`reduce SYMBOL USD`); the
    rest says why: the exposures it measured, which symbols it reduces and by how much. The
    balancer only takes risk away, so `symbols_to_increase` stays empty unless a producer adds
    entries of its own."""

    equity_usd: NonNegativeDecimal
    gross_exposure_usd: NonNegativeDecimal
    exposures_usd: dict[str, SignedDecimal] = Field(default_factory=dict)
    directives: list[str] = Field(default_factory=list)
    status: Annotated[str, Field(pattern=r"^(REBALANCE_REQUIRED|BALANCED)$")] = "REBALANCE_REQUIRED"
    sector_exposures_usd: dict[str, NonNegativeDecimal] = Field(default_factory=dict)
    symbols_to_reduce: list[Symbol] = Field(default_factory=list)
    symbols_to_increase: list[Symbol] = Field(default_factory=list)
    reductions_usd: dict[str, NonNegativeDecimal] = Field(default_factory=dict)
    reasons: dict[str, Text] = Field(default_factory=dict)
    decision_id: int | None = Field(default=None, ge=1)  # the HFOS decision that let it through


class ProfitAmplification(Payload):
    position_id: Name
    symbol: Symbol
    action: Annotated[str, Field(pattern=r"^(add|extend_take_profit|hold)$")]
    add_size_usd: NonNegativeDecimal = Decimal("0")
    reason: Text
    decision_id: int | None = Field(default=None, ge=1)


class MarketBar(Payload):
    symbol: Symbol
    timeframe: Timeframe
    open_time: UtcDatetime
    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: NonNegativeDecimal

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> MarketBar:
        if not (self.high >= max(self.open, self.close) and min(self.open, self.close) >= self.low):
            raise ValueError("OHLC inconsistent: need high >= max(open, close) >= min(open, close) >= low")
        return self


class OrchestratorDirective(Payload):
    directive: Name
    issuer: Annotated[str, Field(pattern=r"^(self_healing|risk|hfos|pba|pal)$")]
    target: Name
    priority: int = Field(ge=0, le=100)
    reason: Text


class PlatformProbe(Payload):
    """A synthetic event for probes, benchmarks and end-to-end checks of the bus itself."""

    probe_id: Name
    sent_at: UtcDatetime
    note: str = ""

    @field_validator("note")
    @classmethod
    def _short_note(cls, v: str) -> str:
        if len(v) > 200:
            raise ValueError("note must be at most 200 characters")
        return v


# --- the catalogue -----------------------------------------------------------------------


class EventType(StrEnum):
    SIGNAL_GENERATED = "signal.generated"
    MODEL_PREDICTION = "model.prediction"
    RL_DECISION = "rl.decision"
    UNIVERSE_OPPORTUNITY = "universe.opportunity"
    EXECUTION_REQUEST = "execution.request"
    EXECUTION_RESULT = "execution.result"
    POSITION_OPENED = "position.opened"
    POSITION_CLOSED = "position.closed"
    RISK_ALERT = "risk.alert"
    EMERGENCY_STOP = "emergency.stop"
    POLICY_UPDATED = "policy.updated"
    SYSTEM_MODE_CHANGED = "system.mode_changed"
    SERVICE_HEARTBEAT = "service.heartbeat"
    HEALTH_STATUS = "health.status"
    SYSTEM_ALERT = "system.alert"
    LEARNING_EVENT = "learning.event"
    PORTFOLIO_BALANCE = "portfolio.balance"
    PROFIT_AMPLIFICATION = "profit.amplification"
    MARKET_BAR = "market.bar"
    ORCHESTRATOR_DIRECTIVE = "orchestrator.directive"
    PLATFORM_PROBE = "platform.probe"


# type -> (payload model, current schema version): what is published now.
PAYLOADS: dict[EventType, tuple[type[Payload], int]] = {
    EventType.SIGNAL_GENERATED: (SignalGenerated, 1),
    EventType.MODEL_PREDICTION: (ModelPrediction, 1),
    EventType.RL_DECISION: (RlDecision, 2),
    EventType.UNIVERSE_OPPORTUNITY: (UniverseOpportunity, 1),
    EventType.EXECUTION_REQUEST: (ExecutionRequest, 1),
    EventType.EXECUTION_RESULT: (ExecutionResult, 1),
    EventType.POSITION_OPENED: (PositionOpened, 1),
    EventType.POSITION_CLOSED: (PositionClosed, 1),
    EventType.RISK_ALERT: (RiskAlert, 1),
    EventType.EMERGENCY_STOP: (EmergencyStop, 1),
    EventType.POLICY_UPDATED: (PolicyUpdated, 1),
    EventType.SYSTEM_MODE_CHANGED: (SystemModeChanged, 1),
    EventType.SERVICE_HEARTBEAT: (ServiceHeartbeat, 1),
    EventType.HEALTH_STATUS: (HealthStatus, 1),
    EventType.SYSTEM_ALERT: (SystemAlert, 1),
    EventType.LEARNING_EVENT: (LearningEvent, 2),
    EventType.PORTFOLIO_BALANCE: (PortfolioBalance, 1),
    EventType.PROFIT_AMPLIFICATION: (ProfitAmplification, 1),
    EventType.MARKET_BAR: (MarketBar, 1),
    EventType.ORCHESTRATOR_DIRECTIVE: (OrchestratorDirective, 1),
    EventType.PLATFORM_PROBE: (PlatformProbe, 1),
}


# Older versions still parsed (stored events, a worker not yet upgraded). A consumer that
# cannot act on an old version refuses it with its reason; nothing publishes them any more.
OLDER_PAYLOADS: dict[tuple[EventType, int], type[Payload]] = {
    (EventType.RL_DECISION, 1): RlDecisionV1,
    (EventType.LEARNING_EVENT, 1): LearningEventV1,
}


def payload_model(event_type: EventType, version: int) -> type[Payload]:
    model, current = PAYLOADS[event_type]
    if version == current:
        return model
    try:
        return OLDER_PAYLOADS[(event_type, version)]
    except KeyError:
        known = sorted([current, *(v for (t, v) in OLDER_PAYLOADS if t == event_type)])
        raise EventValidationError(event_type, [{
            "field": "version", "message": f"unknown version {version} of {event_type}; known: {known}"}]) from None


class EventValidationError(ValueError):
    """An event was refused: unknown type or a payload/envelope field out of its contract.

    Not recoverable by retrying: the publisher must fix its input. `errors` lists
    {"field": dotted path, "message": why} for each offending field.
    """

    def __init__(self, event_type: str, errors: list[dict[str, str]]):
        self.event_type = event_type
        self.errors = errors
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        super().__init__(f"invalid {event_type} event: {detail}")


def _errors_from(exc: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        out.append({"field": f"{prefix}{loc}", "message": err["msg"]})
    return out


class EventEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    type: EventType
    version: int = Field(ge=1)
    trace_id: str
    source: Annotated[str, Field(min_length=1, max_length=64)]
    timestamp: UtcDatetime
    payload: dict[str, Any]

    @field_validator("trace_id")
    @classmethod
    def _trace_id_format(cls, v: str) -> str:
        if not is_valid_trace_id(v):
            raise ValueError("trace_id must be 8-64 characters of letters, digits, _ . : -")
        return v

    def data(self) -> Payload:
        """The typed payload, of the model of this envelope's version."""
        return payload_model(self.type, self.version).model_validate(self.payload)


def validate_payload(event_type: str, payload: Any) -> tuple[EventType, Payload, int]:
    """Check type and payload; return (type, typed payload, version) or raise EventValidationError."""
    try:
        etype = EventType(event_type)
    except ValueError:
        raise EventValidationError(
            str(event_type), [{"field": "type", "message": f"unknown event type {event_type!r}"}]
        ) from None
    model, version = PAYLOADS[etype]
    if isinstance(payload, model):
        return etype, payload, version
    if isinstance(payload, Payload):
        raise EventValidationError(
            etype, [{"field": "payload", "message": f"expected {model.__name__}, got {type(payload).__name__}"}]
        )
    try:
        return etype, model.model_validate(payload), version
    except ValidationError as exc:
        raise EventValidationError(etype, _errors_from(exc, "payload.")) from None


def build_envelope(
    event_type: str, payload: Any, *, trace_id: str, source: str, event_id: uuid.UUID | None = None
) -> EventEnvelope:
    etype, typed, version = validate_payload(event_type, payload)
    try:
        return EventEnvelope(
            event_id=event_id or uuid.uuid4(),
            type=etype,
            version=version,
            trace_id=trace_id,
            source=source,
            timestamp=datetime.now(UTC),
            payload=typed.model_dump(mode="json"),
        )
    except ValidationError as exc:
        raise EventValidationError(etype, _errors_from(exc, "")) from None


def parse_envelope(raw: dict[str, Any]) -> EventEnvelope:
    """Validate an envelope received from the wire (and its payload)."""
    try:
        env = EventEnvelope.model_validate(raw)
    except ValidationError as exc:
        raise EventValidationError(str(raw.get("type", "?")), _errors_from(exc, "")) from None
    try:
        payload_model(env.type, env.version).model_validate(env.payload)
    except ValidationError as exc:
        raise EventValidationError(env.type, _errors_from(exc, "payload.")) from None
    return env
