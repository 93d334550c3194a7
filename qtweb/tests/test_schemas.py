"""Event contracts: every design type exists, and bad payloads are refused with the field named."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtweb.events.schemas import (
    PAYLOADS,
    EventEnvelope,
    EventType,
    EventValidationError,
    build_envelope,
    parse_envelope,
    validate_payload,
)

DESIGN_TYPES = {
    "signal.generated", "model.prediction", "rl.decision", "universe.opportunity", "execution.request",
    "execution.result", "position.opened", "position.closed", "risk.alert", "emergency.stop", "policy.updated",
    "system.mode_changed", "service.heartbeat", "health.status", "system.alert", "learning.event",
    "portfolio.balance", "profit.amplification",
}

SIGNAL = {
    "symbol": "BTC/USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.72, "score": 0.4,
    "ensemble_agreement": 0.75, "models_voted": 4,
}


def test_every_design_event_type_has_a_payload_model():
    assert {t.value for t in EventType} >= DESIGN_TYPES
    assert set(PAYLOADS) == set(EventType)


def _field_of(exc: EventValidationError) -> list[str]:
    return [e["field"] for e in exc.errors]


@pytest.mark.parametrize(
    ("event_type", "payload", "field"),
    [
        ("signal.generated", {**SIGNAL, "confidence": 1.2}, "payload.confidence"),
        ("signal.generated", {**SIGNAL, "confidence": -0.1}, "payload.confidence"),
        ("signal.generated", {**SIGNAL, "confidence": float("nan")}, "payload.confidence"),
        ("signal.generated", {**SIGNAL, "symbol": "btcusdt"}, "payload.symbol"),
        ("signal.generated", {**SIGNAL, "action": "MAYBE"}, "payload.action"),
        ("signal.generated", {k: v for k, v in SIGNAL.items() if k != "symbol"}, "payload.symbol"),
        ("signal.generated", {**SIGNAL, "surprise": 1}, "payload.surprise"),
        ("execution.request", {"client_order_id": "c1", "symbol": "ETH/USDT:USDT", "side": "buy",
                               "order_type": "market", "amount": "0"}, "payload.amount"),
        ("execution.request", {"client_order_id": "c1", "symbol": "ETH/USDT", "side": "long",
                               "order_type": "market", "amount": "1"}, "payload.side"),
        ("position.opened", {"position_id": "p1", "symbol": "ETH/USDT", "side": "long", "amount": "-1",
                             "entry_price": "100"}, "payload.amount"),
        ("service.heartbeat", {"service": "ai-service", "queue": "inference", "worker": "w", "host": "h", "pid": 0,
                               "uptime_seconds": 1, "cpu_percent": 1, "memory_percent": 1, "rss_mb": 1,
                               "active_tasks": 0, "events_processed_last_minute": 0}, "payload.pid"),
        ("system.mode_changed", {"previous_mode": "NORMAL", "mode": "PANIC", "reason": "why not",
                                 "changed_by": "op"}, "payload.mode"),
    ],
)
def test_bad_payload_is_refused_naming_the_field(event_type, payload, field):
    with pytest.raises(EventValidationError) as info:
        validate_payload(event_type, payload)
    assert field in _field_of(info.value)
    assert field in str(info.value)


def test_cross_field_rules():
    with pytest.raises(EventValidationError, match="price is required for a limit order"):
        validate_payload("execution.request", {"client_order_id": "c1", "symbol": "ETH/USDT", "side": "buy",
                                               "order_type": "limit", "amount": "1"})
    with pytest.raises(EventValidationError, match="prob_up"):
        validate_payload("model.prediction", {"symbol": "ETH/USDT", "timeframe": "1h", "model": "xgb",
                                              "model_version": "1", "prob_up": 0.7, "prob_down": 0.6,
                                              "latency_ms": 1})
    with pytest.raises(EventValidationError, match="OHLC"):
        validate_payload("market.bar", {"symbol": "ETH/USDT", "timeframe": "5m", "open_time": datetime.now(UTC),
                                        "open": "10", "high": "9", "low": "8", "close": "9.5", "volume": "1"})


def test_unknown_type_is_refused():
    with pytest.raises(EventValidationError) as info:
        validate_payload("signal.invented", {})
    assert _field_of(info.value) == ["type"]


def test_naive_timestamps_are_refused_and_aware_ones_become_utc():
    with pytest.raises(EventValidationError, match="timezone-aware"):
        validate_payload("platform.probe", {"probe_id": "x", "sent_at": datetime(2026, 1, 1, 12, 0)})
    _, typed, _ = validate_payload(
        "platform.probe", {"probe_id": "x", "sent_at": datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))}
    )
    assert typed.sent_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_envelope_carries_the_design_fields_and_round_trips():
    env = build_envelope("signal.generated", SIGNAL, trace_id="abcdef1234567890", source="ai-service")
    wire = env.model_dump(mode="json")
    assert set(wire) == {"event_id", "type", "version", "trace_id", "source", "timestamp", "payload"}
    assert wire["timestamp"].endswith("Z") or wire["timestamp"].endswith("+00:00")
    back = parse_envelope(wire)
    assert back == env
    assert back.data().confidence == 0.72


def test_decimals_survive_the_wire_exactly():
    env = build_envelope("position.closed", {
        "position_id": "p1", "symbol": "BTC/USDT:USDT", "side": "short", "amount": "0.001",
        "entry_price": "64000.10", "exit_price": "63000.05", "pnl_usd": "-1.00000001", "exit_reason": "stop_loss",
    }, trace_id="abcdef1234567890", source="exec-risk-service")
    assert parse_envelope(env.model_dump(mode="json")).data().pnl_usd == Decimal("-1.00000001")


def test_bad_trace_id_is_refused():
    with pytest.raises(EventValidationError) as info:
        build_envelope("signal.generated", SIGNAL, trace_id="bad id!", source="x")
    assert _field_of(info.value) == ["trace_id"]


def test_a_tampered_wire_payload_is_refused_on_parse():
    wire = build_envelope("signal.generated", SIGNAL, trace_id="abcdef1234567890", source="x").model_dump(mode="json")
    wire["payload"]["confidence"] = 3
    with pytest.raises(EventValidationError, match="payload.confidence"):
        parse_envelope(wire)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_confidence_outside_unit_interval_never_passes(value):
    payload = {**SIGNAL, "confidence": value}
    ok = value == value and 0.0 <= value <= 1.0  # noqa: PLR0124 (NaN check)
    if ok:
        validate_payload("signal.generated", payload)
    else:
        with pytest.raises(EventValidationError):
            validate_payload("signal.generated", payload)


def test_envelope_is_immutable():
    env = EventEnvelope(event_id=uuid.uuid4(), type="platform.probe", version=1, trace_id="abcdef1234567890",
                        source="x", timestamp=datetime.now(UTC), payload={})
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen error type)
        env.source = "y"
