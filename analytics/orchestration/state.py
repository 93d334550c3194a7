"""What the orchestrator decides on, loaded in one place (Django side of the pure cores).

- the open positions, from the trading ledger;
- equity and the day's drawdown, from the account snapshot the execution worker keeps in Redis
  (the ops worker never talks to the exchange);
- the system mode and who set it (self-healing or the risk side);
- the services the health graph holds CRITICAL;
- the current signal of each symbol (the newest `signal.generated` within two bars);
- the reductions the balancer already asked for that have not filled yet.

State that is missing or older than HFOS_STATE_MAX_AGE_SECONDS is unknown, and `load()` says why
instead of returning a state: a decision that moves money is not made on a guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

from core.decimals import ZERO, to_decimal
from core.enums import IntentStatus, Mode, PositionSide, SignalAction
from qtweb.logging import get_logger

log = get_logger(__name__)

HEALING_ACTOR = "self-healing"
# A reduction the balancer asked for is pending until its intent has finished; one whose event was
# never turned into an intent within this time is given up on (the next pass asks again).
PENDING_REDUCTION_MAX_SECONDS = 3600
# The execution subscriber that turns portfolio.balance into intents (trading/subscribers.py).
PBA_CONSUMER = "trading.execution.on_portfolio_balance"


@dataclass(frozen=True)
class OpenPosition:
    id: int
    symbol: str
    symbol_id: int
    sector: str
    side: str
    amount: Decimal
    entry_price: Decimal
    mark_price: Decimal
    leverage: int
    liquidation_price: Decimal | None
    opened_at: datetime
    trace_id: str
    exit_pending: bool = False  # an exit is being worked: nothing is added to it

    @property
    def notional_usd(self) -> Decimal:
        return self.amount * self.mark_price

    @property
    def pnl_pct(self) -> Decimal:
        move = (self.mark_price - self.entry_price) / self.entry_price * 100
        return move if self.side == PositionSide.LONG else -move


@dataclass
class State:
    now: datetime
    exchange: str
    equity_usd: Decimal
    drawdown_pct: Decimal | None  # None: the day's starting equity is unknown
    positions: list[OpenPosition]
    mode: Mode
    mode_set_by: str
    entries_blocked_until: datetime | None
    critical_services: list[str] | None  # None: the health graph is unknown
    signals: dict[str, str | None] = field(default_factory=dict)  # symbol -> long/short/None
    pending_reductions_usd: dict[str, Decimal] = field(default_factory=dict)
    # Entries being worked (TWAP/VWAP slices not sent yet, adds not filled): the risk validator
    # counts them as exposure, so the room an add gets counts them too.
    in_flight_entries_usd: dict[str, Decimal] = field(default_factory=dict)

    def position(self, symbol: str) -> OpenPosition | None:
        return next((p for p in self.positions if p.symbol == symbol), None)


def _positions(exchange: str) -> list[OpenPosition]:
    from trading.selectors import open_positions_list

    out = []
    for p in open_positions_list(exchange):
        if p.amount <= 0:
            continue
        out.append(OpenPosition(
            id=p.pk, symbol=p.symbol.symbol, symbol_id=p.symbol_id, sector=p.symbol.sector,
            side=p.side, amount=p.amount, entry_price=p.entry_price, mark_price=p.mark_price or p.entry_price,
            leverage=p.leverage, liquidation_price=p.liquidation_price, opened_at=p.opened_at, trace_id=p.trace_id,
            exit_pending=p.exit_pending))
    return out


def _signals(symbols: list[str], now: datetime) -> dict[str, str | None]:
    """The newest signal of each symbol within two bars of the signals' timeframe; None when there is
    none (no agreeing signal: PAL adds nothing)."""
    from qtweb.events import EventType
    from qtweb.events.models import Event
    from trading.marketdata.timeframes import seconds

    since = now - timedelta(seconds=2 * seconds(settings.UNIVERSE_TIMEFRAME))
    out: dict[str, str | None] = dict.fromkeys(symbols)
    rows = (Event.objects.filter(type=EventType.SIGNAL_GENERATED.value, timestamp__gte=since)
            .order_by("timestamp").values_list("payload", flat=True))
    for payload in rows:
        sym = payload.get("symbol")
        if sym not in out:
            continue
        try:
            side = SignalAction(payload.get("action")).side
        except ValueError:
            continue
        out[sym] = None if side is None else side.opens.value
    return out


def _pending_reductions(now: datetime) -> dict[str, Decimal]:
    """Reductions the balancer published that are still on their way: the event not yet handled by
    execution, or its intent not finished. An event execution refused (handled, no intent) is not
    pending: the next pass asks again. Older than PENDING_REDUCTION_MAX_SECONDS, nothing is pending
    (execution refuses an event that old, so it cannot land on top of its replacement)."""
    from analytics.models import DirectiveOutcome, HfosDirective
    from qtweb.events.models import DeliveryStatus, EventDelivery
    from trading.models import ExecutionIntent

    since = now - timedelta(seconds=PENDING_REDUCTION_MAX_SECONDS)
    out: dict[str, Decimal] = {}
    for d in HfosDirective.objects.filter(layer="pba", kind="reduce", outcome=DirectiveOutcome.ACCEPTED,
                                          event_id__isnull=False, created_at__gte=since):
        statuses = set(ExecutionIntent.objects.filter(intent_key__startswith=f"pba:{d.event_id}:",
                                                      symbol__symbol=d.symbol).values_list("status", flat=True))
        if statuses:
            pending = bool(statuses & {IntentStatus.PENDING.value, IntentStatus.WORKING.value})
        else:
            pending = EventDelivery.objects.filter(event_id=d.event_id, subscriber=PBA_CONSUMER,
                                                   status=DeliveryStatus.PENDING).exists()
        if pending:
            out[d.symbol] = out.get(d.symbol, ZERO) + d.amount_usd
    return out


def _in_flight_entries(exchange: str) -> dict[str, Decimal]:
    from trading.selectors import in_flight_entries

    out: dict[str, Decimal] = {}
    for e in in_flight_entries(exchange):
        out[e.symbol] = out.get(e.symbol, ZERO) + e.size_usd
    return out


def critical_services(now: datetime) -> list[str] | None:
    """The services the health graph holds CRITICAL; None when there is no graph or it is older than
    HFOS_STATE_MAX_AGE_SECONDS (the monitor stopped: its last view is no longer known to be true)."""
    from analytics.health import graph as health_graph
    from qtweb.events.schemas import HealthState

    graph = health_graph.latest()
    if not graph:
        return None
    try:
        generated = datetime.fromisoformat(graph["generated_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if generated.tzinfo is None or (now - generated).total_seconds() > settings.HFOS_STATE_MAX_AGE_SECONDS:
        return None
    return sorted(name for name, s in graph.get("services", {}).items() if s.get("status") == HealthState.CRITICAL)


def load(now: datetime) -> State | str:
    """The state, or the reason it is unknown."""
    from risk.selectors import entries_blocked_until, last_mode_change
    from risk.services.modes import mode_get
    from trading.selectors import execution_exchange
    from trading.snapshots import snapshot_get

    exchange = execution_exchange()
    snap = snapshot_get(exchange)
    if snap is None:
        return f"no account snapshot of {exchange}: equity unknown"
    age = snap.age_seconds(now)
    if age > settings.HFOS_STATE_MAX_AGE_SECONDS:
        return f"account snapshot of {exchange} is {age:.0f} s old (> {settings.HFOS_STATE_MAX_AGE_SECONDS:g} s)"
    if snap.equity_usd <= 0:
        return f"equity of {exchange} is {snap.equity_usd}: nothing to measure exposure against"
    # Pending reductions before positions: a reduction that fills in between is then seen twice
    # (pending, and in the smaller position) and under-reduces, never reduced twice.
    pending = _pending_reductions(now)
    in_flight = _in_flight_entries(exchange)
    positions = _positions(exchange)
    last = last_mode_change()
    # Without the day's starting equity the drawdown is unknown (not 0): amplification is blocked.
    drawdown = snap.drawdown * 100 if snap.day_start_equity_usd > 0 else None
    state = State(now=now, exchange=exchange, equity_usd=to_decimal(snap.equity_usd, "equity_usd"),
                  drawdown_pct=drawdown, positions=positions, mode=Mode(mode_get()),
                  mode_set_by=last.changed_by if last is not None else "",
                  entries_blocked_until=entries_blocked_until(),
                  critical_services=critical_services(now), pending_reductions_usd=pending,
                  in_flight_entries_usd=in_flight)
    state.signals = _signals([p.symbol for p in positions], now)
    return state
