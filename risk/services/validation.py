"""Risk validation as a service: build the snapshot (policy, mode, account, open orders,
reference price and its age, recent order count, duplicates), run the pure validator, record
the decision with the policy version it used, publish `risk.alert` (TRADE_BLOCKED) on
rejection.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.decimals import to_decimal
from core.enums import PositionSide, Side
from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.health.status import report_module
from qtweb.logging import get_logger
from qtweb.queues import Service
from qtweb.tracing import current_trace_id
from risk import selectors
from risk.domain import rules
from risk.models import DailyEquity, RiskDecision
from risk.services.modes import mode_get
from risk.services.policy import policy_get
from trading import selectors as trading_sel
from trading.marketdata.reference import reference_price
from trading.models import Symbol

log = get_logger(__name__)

ZERO = Decimal("0")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class IntentRequest:
    """What a caller asks the validator about (sizes in USD)."""

    symbol: str
    side: str
    size_usd: Decimal
    leverage: int = 1
    reduce_only: bool = False
    confidence: Decimal | None = None
    intent_key: str = ""
    price: Decimal | None = None
    source: str = "signal"


_day_start: tuple | None = None  # (day, equity): a day's row never changes once written


def forget_day_start() -> None:
    """Drop the memo (after a gateway reload, a rebuilt test database)."""
    global _day_start
    _day_start = None


def day_start_equity(equity_usd: Decimal, now=None) -> Decimal:
    """The UTC day's starting equity: the first value seen today, stored once."""
    global _day_start
    day = (now or timezone.now()).date()
    if _day_start is not None and _day_start[0] == day:
        return _day_start[1]
    found = selectors.day_start_equity_get(day)
    if found is not None:
        _day_start = (day, found)
        return found
    try:
        with transaction.atomic():
            DailyEquity.objects.create(day=day, start_equity_usd=equity_usd)
    except IntegrityError:
        pass
    return selectors.day_start_equity_get(day) or equity_usd


def _direction(side: str) -> PositionSide:
    return Side(side).opens


def _fingerprint(side: str, symbol: str, size_usd: Decimal) -> str:
    return f"{side}:{symbol}:{to_decimal(size_usd, 'size_usd').quantize(Decimal('1'))}"


def snapshot_build(req: IntentRequest, *, view: trading_sel.AccountView | None = None, symbol: Symbol | None = None,
                   reference: tuple[Decimal | None, float | None] | None = None) -> rules.Snapshot:
    view = view or trading_sel.account_view()
    now = timezone.now()
    sector = symbol.sector if symbol is not None else (
        Symbol.objects.filter(exchange=view.exchange, symbol=req.symbol).values_list("sector", flat=True).first()
        or "")
    ref, age = reference if reference is not None else reference_price(view.exchange, req.symbol)
    # The intent and the position on its symbol are valued at the same price (a reduce-only
    # exit of the whole position must not look bigger than the position by a rounding).
    positions = tuple(rules.Exposure(symbol=p.symbol.symbol, side=p.side,
                                     notional_usd=(p.amount * ref) if (ref and p.symbol.symbol == req.symbol)
                                     else p.notional_usd, sector=p.symbol.sector) for p in view.positions)
    refs: dict[str, Decimal | None] = {}
    open_orders = []
    for o in view.open_orders:
        remaining = o.amount - o.filled
        if remaining <= 0:
            continue
        price = o.price
        if price is None:
            if o.symbol.symbol not in refs:
                refs[o.symbol.symbol] = reference_price(view.exchange, o.symbol.symbol)[0]
            price = refs[o.symbol.symbol] or ZERO
        open_orders.append(rules.OpenOrder(symbol=o.symbol.symbol, side=o.side, notional_usd=remaining * price,
                                           reduce_only=o.reduce_only, sector=o.symbol.sector))
    # Intents in flight: the slices they have not sent yet count as open entry orders (a VWAP
    # over hours must not leave room for a second full position), and an identical entry still
    # in flight is a duplicate (the same order asked twice under different keys).
    recent: set[str] = set()
    for other in trading_sel.in_flight_entries(view.exchange, exclude_key=req.intent_key):
        recent.add(_fingerprint(other.side, other.symbol, other.size_usd))
        if other.unsent_amount > 0:
            if other.symbol not in refs:
                refs[other.symbol] = ref if other.symbol == req.symbol else reference_price(view.exchange,
                                                                                            other.symbol)[0]
            open_orders.append(rules.OpenOrder(symbol=other.symbol, side=other.side, reduce_only=False,
                                               notional_usd=other.unsent_amount * (refs[other.symbol] or ZERO),
                                               sector=other.sector))
    fingerprint = "" if req.reduce_only else _fingerprint(req.side, req.symbol, req.size_usd)
    intent = rules.Intent(symbol=req.symbol, side=req.side, size_usd=req.size_usd, leverage=req.leverage,
                          reduce_only=req.reduce_only, confidence=req.confidence, intent_key=fingerprint,
                          sector=sector, price=req.price)
    return rules.Snapshot(
        policy=policy_get(), mode=mode_get().value, equity_usd=view.equity_usd,
        day_start_equity_usd=day_start_equity(view.equity_usd, now), positions=positions,
        open_orders=tuple(open_orders), intent=intent, reference_price=ref, reference_price_age_seconds=age,
        orders_last_minute=trading_sel.orders_last_minute_count(view.exchange, now),
        recent_intent_keys=frozenset(recent),
        entries_blocked_until=selectors.entries_blocked_until(), now=now)


def _report_validator(status: str, reason: str, **details) -> None:
    """The validator is the exec-risk service's `risk` module in the health graph: a rejection is
    the validator working; only a validation that could not run is DEGRADED."""
    report_module(Service.EXEC_RISK.value, "risk", status, reason, **details)


def _snapshot_record(s: rules.Snapshot) -> dict:
    return {
        "equity_usd": str(s.equity_usd), "day_start_equity_usd": str(s.day_start_equity_usd),
        "positions": len(s.positions), "open_orders": len(s.open_orders),
        "gross_exposure_usd": str(sum((p.notional_usd for p in s.positions), ZERO).quantize(CENT)),
        "reference_price": str(s.reference_price) if s.reference_price is not None else None,
        "reference_price_age_seconds": s.reference_price_age_seconds, "orders_last_minute": s.orders_last_minute,
    }


def intent_validate(req: IntentRequest, *, view: trading_sel.AccountView | None = None, symbol: Symbol | None = None,
                    record: bool = True, alert: bool = True,
                    reference: tuple[Decimal | None, float | None] | None = None,
                    ) -> tuple[rules.Verdict, RiskDecision | None]:
    """Validate one intent. Records a RiskDecision (unless record=False: RPC what-if questions)
    and publishes risk.alert TRADE_BLOCKED with every reason when rejected. `reference`: the
    (price, age) the caller already read."""
    try:
        snapshot = snapshot_build(req, view=view, symbol=symbol, reference=reference)
        verdict = rules.validate(snapshot)
    except Exception as exc:  # the validator cannot see the account or the rules broke: reported, then raised
        _report_validator("DEGRADED", f"validation could not run for {req.symbol}: {type(exc).__name__}: {exc}")
        raise
    _report_validator("HEALTHY", f"last validation ran: {req.side} {req.symbol} "
                      f"{'approved' if verdict.approved else 'rejected: ' + verdict.reason}",
                      approved=verdict.approved, policy_version=verdict.policy_version)
    decision = None
    if record:
        decision = RiskDecision.objects.create(
            trace_id=current_trace_id() or "", intent_key=req.intent_key, source=req.source, symbol=req.symbol,
            side=req.side, size_usd=req.size_usd, leverage=req.leverage, reduce_only=req.reduce_only,
            confidence=req.confidence, approved=verdict.approved,
            reasons=[{"rule": r.rule, "message": r.message} for r in verdict.reasons],
            max_allowed_size_usd=verdict.max_allowed_size_usd, policy_version=verdict.policy_version,
            mode=snapshot.mode, snapshot=_snapshot_record(snapshot))
    if not verdict.approved and alert:
        publish(EventType.RISK_ALERT, {
            "severity": "warning", "rule": "TRADE_BLOCKED",
            "message": f"{req.side} {req.size_usd:.2f} USD {req.symbol} blocked: {verdict.reason}"[:2000],
            "symbol": req.symbol, "policy_version": verdict.policy_version, "rejected": True,
            "reasons": [{"rule": r.rule, "message": r.message[:500]} for r in verdict.reasons],
            "max_allowed_size_usd": verdict.max_allowed_size_usd,
        })
        log.warning("trade blocked", symbol=req.symbol, side=req.side, size_usd=str(req.size_usd),
                    reasons=[r.rule for r in verdict.reasons], policy_version=verdict.policy_version)
    return verdict, decision
