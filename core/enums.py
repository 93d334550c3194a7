"""One definition for each domain word. Model choices, event schemas and the pure cores all
build on these; the string values are what the database rows and event payloads hold."""
from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """An order's side, as ccxt's unified API spells it."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def opens(self) -> PositionSide:
        """The position an entry on this side opens (buy -> long, sell -> short)."""
        return PositionSide.LONG if self is Side.BUY else PositionSide.SHORT


class PositionSide(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def opposite(self) -> PositionSide:
        return PositionSide.SHORT if self is PositionSide.LONG else PositionSide.LONG

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is PositionSide.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        return Side.SELL if self is PositionSide.LONG else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is PositionSide.LONG else -1


class SignalAction(StrEnum):
    """What the ensemble says about a symbol."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"

    @property
    def side(self) -> Side | None:
        return {SignalAction.BUY: Side.BUY, SignalAction.SELL: Side.SELL}.get(self)


class Mode(StrEnum):
    """The system mode: NORMAL trades; SHADOW records decisions and sends nothing; REDUCE_ONLY
    lets only orders that shrink positions through; HALTED lets nothing through."""

    NORMAL = "NORMAL"
    SHADOW = "SHADOW"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class ExecutionStrategy(StrEnum):
    """How an intent becomes orders: SMART picks among the others by the order's share of a
    bar's volume."""

    MARKET = "market"
    LIMIT = "limit"
    TWAP = "twap"
    VWAP = "vwap"
    SMART = "smart"


class OrderStatus(StrEnum):
    """An order as this system records it."""

    PENDING_SUBMIT = "pending"  # recorded, not yet acknowledged by the exchange
    OPEN = "open"
    PARTIALLY_FILLED = "partial"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # the exchange's answer was lost: reconciliation decides


class ExchangeOrderStatus(StrEnum):
    """An order's status as an exchange reports it (ccxt's unified values; the paper exchange
    speaks the same)."""

    OPEN = "open"
    CLOSED = "closed"  # filled in full
    CANCELED = "canceled"
    REJECTED = "rejected"


class ExecutionStatus(StrEnum):
    """An order's outcome as `execution.result` reports it."""

    OPEN = "open"
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # e.g. a timeout on order creation: outcome unknown, never "failed"


class IntentStatus(StrEnum):
    PENDING = "pending"
    REJECTED = "rejected"
    SHADOW = "shadow"
    WORKING = "working"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


class IntentSource(StrEnum):
    SIGNAL = "signal"
    MANUAL = "manual"
    PORTFOLIO_BALANCE = "portfolio_balance"
    PROFIT_AMPLIFICATION = "profit_amplification"
    POSITION_EXIT = "position_exit"
    EMERGENCY = "emergency"


class PositionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class MarketType(StrEnum):
    SPOT = "spot"
    PERPETUAL = "swap"  # ccxt calls perpetuals "swap"


class CloseReason(StrEnum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    GOVERNOR = "governor"
    MANUAL = "manual"
    LIQUIDATION = "liquidation"
    EMERGENCY_STOP = "emergency_stop"
    REBALANCE = "rebalance"
    SIGNAL_REVERSAL = "signal_reversal"
    RECONCILIATION = "reconciliation"  # the exchange no longer holds it (closed outside this system)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


class Timeframe(StrEnum):
    """A bar length, finest first."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        return _TIMEFRAME_SECONDS[self.value]

    @property
    def milliseconds(self) -> int:
        return _TIMEFRAME_SECONDS[self.value] * 1000

    @classmethod
    def parse(cls, value: object) -> Timeframe:
        """ValueError naming the supported timeframes for anything else."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown timeframe {value!r}; supported: {', '.join(cls)}") from None


def choices(enum: type[StrEnum], labels: dict | None = None) -> list[tuple[str, str]]:
    """Django model/form choices for `enum`, with optional human labels per member."""
    labels = labels or {}
    return [(m.value, labels.get(m, m.value)) for m in enum]
