"""Sources: typed translators from what asks for a trade to intents.

Each reads a typed event payload (EventEnvelope.data()) or a position and calls intent_create
with a deterministic key, so a redelivered event finds the intent it made the first time:

intent_from_rl_decision       rl.decision v2 (the signal it sized travels with it)
intent_from_request           execution.request (an operator's manual order)
intents_from_portfolio_balance portfolio.balance directives (`<buy|sell|reduce> SYMBOL SIZE_USD`)
profit_amplification_apply    profit.amplification (add to a winner, or move its take-profit)
exit_intent                   a reduce-only market exit of a position (TP/SL/trailing, governor,
                              emergency)
"""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.decimals import to_decimal
from core.enums import (
    CloseReason,
    ExecutionStrategy,
    IntentSource,
    MarketType,
    OrderType,
    PositionSide,
    PositionStatus,
)
from core.limits import NAME_MAX
from qtweb.events import EventEnvelope
from qtweb.events.schemas import ExecutionRequest, PortfolioBalance, ProfitAmplification, RlDecision
from qtweb.logging import get_logger
from trading.exchanges.account import exchange_id
from trading.execution import planning
from trading.execution.services.intents import CENT, IntentError, intent_create
from trading.models import ExecutionIntent, Position, Symbol

log = get_logger(__name__)

CONFIDENCE_QUANTUM = Decimal("0.000001")
# A monitor exit refused twice in a row waits before the next try, doubling up to the cap: a
# permanent refusal (an order the exchange will never take) must not resend every monitor run
# and spend the order-rate budget the other symbols need. The first retry stays immediate.
EXIT_RETRY_BASE_SECONDS = 10.0
EXIT_RETRY_MAX_SECONDS = 300.0
PAL_ADD = "add"
# A balancer's reduction older than this is not carried out: the balancer counts a reduction as on
# its way for this long (analytics/orchestration/state.py), then asks again if still needed.
PORTFOLIO_BALANCE_MAX_AGE_SECONDS = 3600
CLOSE_FRACTION = Decimal("0.99")
PAL_EXTEND_TAKE_PROFIT = "extend_take_profit"


class OutdatedEvent(IntentError):
    """An event of a version this consumer cannot act on; the message says why."""


def _entry_model(model_versions: dict[str, str]) -> str:
    if not model_versions:
        return "ensemble"
    return ("ensemble(" + ",".join(f"{k}:{v}" for k, v in sorted(model_versions.items())) + ")")[:NAME_MAX]


def _open_position(exchange: str, sym: Symbol | None) -> Position | None:
    if sym is None:
        return None
    return Position.objects.filter(exchange=exchange, symbol=sym, status=PositionStatus.OPEN).first()


def intent_from_rl_decision(event: EventEnvelope) -> ExecutionIntent | None:
    """rl.decision -> an intent keyed by the signal's event id (the same signal sized twice still
    trades once). A signal against an open position closes it. None for HOLD, a zero size, or a
    decision the ai-service made in SHADOW.

    Version 1 named no signal; it is refused (OutdatedEvent) rather than traded on a guess."""
    d = event.data()
    if not isinstance(d, RlDecision):
        raise OutdatedEvent(f"rl.decision version {event.version} carries no signal reference (signal event id, "
                            "price, confidence); only version 2 is traded: upgrade the inference worker")
    if d.shadow:  # sized by an ai-service in SHADOW (AI_SERVICE_SHADOW): recorded there, never traded
        log.info("rl.decision made in shadow: no intent", symbol=d.symbol, reason=d.reason, trace_id=event.trace_id)
        return None
    side = d.action.side
    if side is None:
        return None
    exchange = exchange_id()
    sym = Symbol.objects.filter(exchange=exchange, symbol=d.symbol).first()
    position = _open_position(exchange, sym)
    common = {"key": f"signal:{d.signal_event_id}", "source": IntentSource.SIGNAL, "symbol": d.symbol, "side": side,
              "params": {"signal_price": str(d.reference_price)} if d.reference_price else {},
              "confidence": to_decimal(d.confidence, "confidence").quantize(CONFIDENCE_QUANTUM),
              "entry_model": _entry_model(d.model_versions), "trace_id": event.trace_id}
    if position is not None and position.side != side.opens:
        if position.exit_pending:
            return None
        intent, _ = intent_create(**common, amount=position.amount, reduce_only=True,
                                  strategy=ExecutionStrategy.MARKET, exit_reason=CloseReason.SIGNAL_REVERSAL,
                                  position=position, leverage=position.leverage, symbol_obj=sym)
        return intent
    if d.final_size_usd <= 0:
        return None
    from risk.services.policy import policy_get

    leverage = 1 if sym is None or sym.market_type == MarketType.SPOT else min(int(policy_get().max_leverage),
                                                                                 int(settings.EXECUTION_LEVERAGE))
    # The meta-strategy's profile (when it chose one) picks the strategy; its horizon is kept on
    # the intent for the record: the position monitor has no time exit that would read it.
    profile = {k: v for k, v in (("profile", d.profile), ("horizon_bars", d.horizon_bars)) if v is not None}
    intent, _ = intent_create(**{**common, "params": {**common["params"], **profile}},
                              size_usd=d.final_size_usd.quantize(CENT), leverage=leverage,
                              strategy=d.execution_strategy or ExecutionStrategy.SMART, symbol_obj=sym)
    return intent


def _manual_strategy(r: ExecutionRequest) -> ExecutionStrategy:
    """A limit order runs the `limit` strategy (its price is the order's); a market order the one
    asked for, market by default. (ExecutionRequest refuses combinations that do not fit.)"""
    if r.strategy is not None:
        return r.strategy
    return ExecutionStrategy.LIMIT if r.order_type is OrderType.LIMIT else ExecutionStrategy.MARKET


def intent_from_request(event: EventEnvelope) -> ExecutionIntent:
    """execution.request (a manual order) -> an intent keyed by the operator's client id."""
    r: ExecutionRequest = event.data()
    params = {k: getattr(r, k) for k in ("slices", "duration_seconds", "limit_timeout_seconds", "on_timeout")
              if getattr(r, k) is not None}
    intent, _ = intent_create(
        key=f"manual:{r.client_order_id}", source=IntentSource.MANUAL, symbol=r.symbol, side=r.side,
        amount=r.amount, leverage=r.leverage, reduce_only=r.reduce_only, strategy=_manual_strategy(r),
        order_type=r.order_type, limit_price=r.price, params=params, stop_loss_price=r.stop_loss_price,
        take_profit_price=r.take_profit_price, created_by=r.requested_by or "operator", trace_id=event.trace_id,
        exit_reason=CloseReason.MANUAL)
    return intent


def intents_from_portfolio_balance(event: EventEnvelope) -> list[ExecutionIntent]:
    """The balancer's directives through the same risk path as any entry; a reduce is reduce-only
    against the open position.

    All or nothing: every directive is checked first (it parses, its symbol is traded, a reduce
    has an open position to reduce and is not bigger than it), and one bad directive refuses the
    whole event with every reason (logged, and raised as IntentError), so a rebalance is never
    half-applied."""
    p: PortfolioBalance = event.data()
    exchange = exchange_id()
    age = (timezone.now() - event.timestamp).total_seconds()
    if age > PORTFOLIO_BALANCE_MAX_AGE_SECONDS:
        # The balancer has stopped counting it as on its way and may have asked again since.
        raise IntentError(f"portfolio.balance refused, nothing applied: it is {age:.0f} s old "
                          f"(> {PORTFOLIO_BALANCE_MAX_AGE_SECONDS} s); the balancer's next pass decides afresh")
    planned, problems = [], []
    for i, text in enumerate(p.directives):
        try:
            directive = planning.parse_rebalance_directive(text)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        sym = Symbol.objects.filter(exchange=exchange, symbol=directive.symbol).first()
        if sym is None:
            problems.append(f"directive {text!r}: unknown symbol {directive.symbol} on {exchange}")
            continue
        side = directive.side
        if directive.reduce_only:
            pos = _open_position(exchange, sym)
            if pos is None:
                problems.append(f"directive {text!r}: no open position in {directive.symbol} to reduce")
                continue
            notional = pos.notional_usd
            if directive.size_usd > notional.quantize(CENT) + CENT:
                problems.append(f"directive {text!r}: reduction of {directive.size_usd} USD is bigger than the "
                                f"{directive.symbol} position ({notional.quantize(CENT)} USD)")
                continue
            side = PositionSide(pos.side).exit_side
            # Within 1 % of the whole position it is a close: sized by the position's amount, so a
            # price a tick below the balancer's mark does not make it "bigger than the position".
            if directive.size_usd >= notional * CLOSE_FRACTION:
                planned.append((i, directive, side, sym, pos.amount))
                continue
        planned.append((i, directive, side, sym, None))
    if problems:
        log.error("portfolio.balance refused: nothing applied", problems=problems, trace_id=event.trace_id)
        raise IntentError("portfolio.balance refused, nothing applied: " + "; ".join(problems))
    out = []
    with transaction.atomic():
        for i, directive, side, sym, amount in planned:
            size = {"amount": amount} if amount is not None else {"size_usd": directive.size_usd}
            intent, _ = intent_create(key=f"pba:{event.event_id}:{i}", source=IntentSource.PORTFOLIO_BALANCE,
                                      symbol=directive.symbol, side=side, **size,
                                      reduce_only=directive.reduce_only, strategy=ExecutionStrategy.SMART,
                                      exit_reason=CloseReason.REBALANCE, trace_id=event.trace_id,
                                      created_by="portfolio-balancer", symbol_obj=sym)
            out.append(intent)
    return out


def profit_amplification_apply(event: EventEnvelope) -> ExecutionIntent | None:
    """PAL: `add` grows a winning position (an intent, risk-checked like any entry);
    `extend_take_profit` moves its target one ATR further; `hold` does nothing. None unless an
    intent was made."""
    from trading.positions.services import take_profit_extend

    p: ProfitAmplification = event.data()
    pos = Position.objects.filter(pk=int(p.position_id) if p.position_id.isdigit() else -1,
                                  status=PositionStatus.OPEN).select_related("symbol").first()
    if pos is None:
        log.warning("profit.amplification for a position that is not open", position_id=p.position_id)
        return None
    if pos.symbol.symbol != p.symbol:
        raise IntentError(f"profit.amplification names {p.symbol} but position {p.position_id} is "
                          f"{pos.symbol.symbol}: refused")
    if p.action == PAL_ADD and p.add_size_usd > 0:
        size = _amplification_size(pos, p.add_size_usd)
        if size < p.add_size_usd:
            log.info("profit amplification cut to the risk limits' room", position_id=pos.pk,
                     asked_usd=str(p.add_size_usd), size_usd=str(size), trace_id=event.trace_id)
        # The mark PAL judged the winner at is the collar's reference: an add that would now execute
        # far from it (the profit gone) is refused by the price collar.
        params = {"signal_price": str(pos.mark_price)} if pos.mark_price else {}
        intent, _ = intent_create(key=f"pal:{event.event_id}", source=IntentSource.PROFIT_AMPLIFICATION,
                                  symbol=pos.symbol.symbol, side=PositionSide(pos.side).entry_side,
                                  size_usd=size, leverage=pos.leverage, strategy=ExecutionStrategy.SMART,
                                  entry_model=pos.entry_model, confidence=pos.entry_confidence, params=params,
                                  trace_id=event.trace_id, created_by="profit-amplification")
        return intent
    if p.action == PAL_EXTEND_TAKE_PROFIT:
        take_profit_extend(pos)
    return None


def _amplification_size(pos: Position, asked_usd: Decimal) -> Decimal:
    """The add PAL asked for, cut to the largest the risk validator would pass now. PAL sized it at
    the bar's mark; the validator measures at the current price with the entries still being
    worked, so a room-capped add a tick too big would otherwise be refused outright."""
    from risk.services.validation import IntentRequest, intent_validate

    verdict, _ = intent_validate(IntentRequest(symbol=pos.symbol.symbol, side=PositionSide(pos.side).entry_side,
                                               size_usd=asked_usd, leverage=pos.leverage,
                                               confidence=pos.entry_confidence,
                                               source=IntentSource.PROFIT_AMPLIFICATION),
                                 symbol=pos.symbol, record=False, alert=False)
    room = (verdict.max_allowed_size_usd or Decimal(0)).quantize(CENT, rounding=ROUND_DOWN)
    if verdict.approved or room <= 0:
        # Approved as asked; or refused for more than its size (the mode, the collar, no room at
        # all): the intent goes as asked so the risk path records the refusal with every reason.
        return asked_usd
    return min(asked_usd, room)


def exit_retry_wait_seconds(attempt: int) -> float:
    """How long attempt number `attempt` (0-based) of a refused monitor exit waits after the last."""
    return 0.0 if attempt < 2 else min(EXIT_RETRY_BASE_SECONDS * 2 ** (attempt - 2), EXIT_RETRY_MAX_SECONDS)


def exit_intent(position: Position, *, reason: str, key_suffix: str, source: str = IntentSource.POSITION_EXIT,
                trace_id: str | None = None) -> ExecutionIntent | None:
    """A reduce-only market intent closing `position` (TP/SL/trailing, governor, emergency).

    None while another exit of the position is in flight. Attempts are numbered under the same
    suffix, so an exit that was refused or failed (a stale price, a throttle, an exchange error)
    is tried again on the monitor's next run instead of waiting for the next bar."""
    with transaction.atomic():
        pos = Position.objects.select_for_update(of=("self",)).select_related("symbol").get(pk=position.pk)
        if pos.status != PositionStatus.OPEN or pos.amount <= 0 or pos.exit_pending:
            return None
        prefix = f"exit:{pos.pk}:{key_suffix}:"
        attempts = ExecutionIntent.objects.filter(intent_key__startswith=prefix)
        attempt = attempts.count()
        if source == IntentSource.POSITION_EXIT and attempt >= 2:
            wait = exit_retry_wait_seconds(attempt)
            last = attempts.order_by("-created_at").values_list("updated_at", flat=True).first()
            if last is not None and (timezone.now() - last).total_seconds() < wait:
                log.info("exit retry backing off", position_id=pos.pk, attempt=attempt, wait_seconds=wait)
                return None
        intent, _ = intent_create(
            key=f"{prefix}{attempt}", source=source, symbol=pos.symbol.symbol,
            side=PositionSide(pos.side).exit_side, amount=pos.amount, leverage=pos.leverage, reduce_only=True,
            strategy=ExecutionStrategy.MARKET, exit_reason=reason, position=pos,
            trace_id=trace_id or pos.trace_id or None, created_by="position-monitor", symbol_obj=pos.symbol)
    return intent


