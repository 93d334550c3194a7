"""Event consumers of the exec-risk service (execution queue).

Each consumer runs inside the transaction that marks the delivery done: it only records the
intent there (idempotent by its key) and does the exchange work right after the commit, in
the same worker (transaction.on_commit), so no exchange call ever sits inside a database
transaction. If the worker dies in between, the beat sweep picks the PENDING intent up.
"""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from qtweb.events import EventEnvelope, EventType, subscriber
from qtweb.logging import get_logger
from qtweb.queues import Queue

log = get_logger(__name__)


def _process_after_commit(intent) -> None:
    if intent is None:
        return
    from trading.execution.orders import ExecutionRetry
    from trading.execution.services import intent_process

    def run(pk=intent.pk, row=intent):
        try:
            intent_process(pk, intent=row)
        except ExecutionRetry as exc:
            from trading.tasks import process_intent

            process_intent.apply_async((pk,), countdown=exc.delay_seconds)
        except Exception:
            log.exception("intent processing failed; the sweep retries it", intent_id=pk)

    transaction.on_commit(run)


@subscriber(EventType.RL_DECISION, queue=Queue.EXECUTION, name="trading.execution.on_rl_decision")
def on_rl_decision(event: EventEnvelope) -> None:
    """Flow 1: signal.generated (looked up by trace id) + rl.decision -> validate -> execute."""
    from trading.execution.services import IntentError, intent_from_rl_decision

    try:
        intent = intent_from_rl_decision(event)
    except IntentError as exc:
        log.warning("rl.decision not tradable", error=str(exc), symbol=event.payload.get("symbol"))
        return
    _process_after_commit(intent)


@subscriber(EventType.EXECUTION_REQUEST, queue=Queue.EXECUTION, name="trading.execution.on_request")
def on_execution_request(event: EventEnvelope) -> None:
    """A manual order: the same risk path as a signal."""
    from qtweb.events.bus import publish
    from trading.execution.services import IntentError, intent_from_request

    try:
        intent = intent_from_request(event)
    except IntentError as exc:
        r = event.payload
        publish(EventType.RISK_ALERT, {"severity": "warning", "rule": "TRADE_BLOCKED",
                                "message": f"manual order {r.get('client_order_id')} refused: {exc}"[:2000],
                                "rejected": True, "reasons": [{"rule": "order", "message": str(exc)[:500]}]})
        return
    _process_after_commit(intent)


@subscriber(EventType.PORTFOLIO_BALANCE, queue=Queue.EXECUTION, name="trading.execution.on_portfolio_balance")
def on_portfolio_balance(event: EventEnvelope) -> None:
    """PBA directives `<buy|sell> <SYMBOL> <size_usd>` or `reduce <SYMBOL> <size_usd>` become intents
    through the same risk path (reduce = reduce-only against the open position)."""
    from trading.execution.services import IntentError, intent_create
    from trading.models import IntentSource

    for i, directive in enumerate(event.payload.get("directives") or []):
        parts = str(directive).split()
        if len(parts) != 3 or parts[0] not in ("buy", "sell", "reduce"):
            log.warning("portfolio directive ignored: expected '<buy|sell|reduce> SYMBOL SIZE_USD'",
                        directive=directive)
            continue
        verb, symbol, size = parts
        try:
            size_usd = Decimal(size)
            reduce_only = verb == "reduce"
            side = verb
            if reduce_only:
                from trading.execution.gateway import exchange_id
                from trading.models import Position

                pos = Position.objects.filter(exchange=exchange_id(), symbol__symbol=symbol, status="open").first()
                if pos is None:
                    log.warning("portfolio directive: nothing to reduce", directive=directive)
                    continue
                side = "sell" if pos.side == "long" else "buy"
            intent, _ = intent_create(key=f"pba:{event.event_id}:{i}", source=IntentSource.PORTFOLIO_BALANCE,
                                      symbol=symbol, side=side, size_usd=size_usd, reduce_only=reduce_only,
                                      strategy="smart", exit_reason="rebalance", trace_id=event.trace_id,
                                      created_by="portfolio-balancer")
        except (IntentError, ArithmeticError) as exc:
            log.warning("portfolio directive refused", directive=directive, error=str(exc))
            continue
        _process_after_commit(intent)


@subscriber(EventType.PROFIT_AMPLIFICATION, queue=Queue.EXECUTION, name="trading.execution.on_profit_amplification")
def on_profit_amplification(event: EventEnvelope) -> None:
    """PAL: `add` grows a winning position (risk-checked like any entry); `extend_take_profit`
    moves its target by one ATR; `hold` does nothing."""
    from trading.execution.services import IntentError, intent_create
    from trading.models import IntentSource, Position
    from trading.positions.services import atr

    p = event.payload
    pos = Position.objects.filter(pk=int(p["position_id"]) if str(p["position_id"]).isdigit() else -1,
                                  status="open").select_related("symbol").first()
    if pos is None:
        log.warning("profit.amplification for a position that is not open", position_id=p["position_id"])
        return
    if p["action"] == "add" and Decimal(str(p["add_size_usd"])) > 0:
        try:
            intent, _ = intent_create(key=f"pal:{event.event_id}", source=IntentSource.PROFIT_AMPLIFICATION,
                                      symbol=pos.symbol.symbol, side="buy" if pos.side == "long" else "sell",
                                      size_usd=Decimal(str(p["add_size_usd"])), leverage=pos.leverage,
                                      strategy="smart", entry_model=pos.entry_model, confidence=pos.entry_confidence,
                                      trace_id=event.trace_id, created_by="profit-amplification")
        except IntentError as exc:
            log.warning("profit amplification refused", error=str(exc))
            return
        _process_after_commit(intent)
    elif p["action"] == "extend_take_profit" and pos.take_profit_price is not None:
        step = atr(pos.symbol_id)
        if step > 0:
            new_tp = pos.take_profit_price + step if pos.side == "long" else max(
                pos.symbol.tick_size, pos.take_profit_price - step)
            Position.objects.filter(pk=pos.pk).update(take_profit_price=new_tp)


@subscriber(EventType.EMERGENCY_STOP, queue=Queue.EXECUTION, name="trading.execution.on_emergency_stop")
def on_emergency_stop(event: EventEnvelope) -> None:
    """Cancel every open order and flatten positions as the event says."""
    from trading.execution.services import emergency_flatten

    flatten = bool(event.payload.get("flatten_positions", True))
    transaction.on_commit(lambda: emergency_flatten(event_id=event.event_id, flatten=flatten,
                                                    trace_id=event.trace_id))


@subscriber(EventType.MARKET_BAR, queue=Queue.EXECUTION, name="trading.positions.on_bar")
def on_market_bar(event: EventEnvelope) -> None:
    """A new bar: update and check the positions on its symbol."""
    from trading.models import Position

    symbol = event.payload["symbol"]
    if not Position.objects.filter(symbol__symbol=symbol, status="open").exists():
        return
    from trading.positions.monitor import monitor_once

    transaction.on_commit(lambda: monitor_once(symbols=[symbol]))


@subscriber(EventType.POSITION_CLOSED, queue=Queue.EXECUTION, name="risk.governor.on_position_closed")
def on_position_closed(event: EventEnvelope) -> None:
    """After each closed position: consecutive losses and drawdown are re-assessed."""
    from risk.services.governor import governor_check

    transaction.on_commit(lambda: governor_check(trigger="position_closed"))
