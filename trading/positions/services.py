"""Positions from fills: open, add, reduce, close, flip; their events.

Called inside the transaction that stores the fill (trading/execution/orders.py), so the
position, the fill and `position.opened` / `position.closed` commit together or not at all.
realized_pnl_usd is net of every fee paid on the position (entry and exit).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import numpy as np
from django.conf import settings

from core.decimals import ZERO, to_decimal
from core.enums import PositionSide, Side
from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.logging import get_logger
from trading.models import ExecutionIntent, Order, Position, PositionStatus
from trading.positions import math as pm

log = get_logger(__name__)

ATR_BARS = 14  # Wilder's classic ATR window


def atr(symbol_id: int, timeframe: str | None = None, bars: int = ATR_BARS) -> Decimal:
    """Average true range of the last `bars` bars of `timeframe` (default POSITION_ATR_TIMEFRAME,
    resampled from the stored bars when it is not stored); 0 without enough history.

    The stops are measured in the ATR of the signals' holding horizon (1h: the models forecast
    12 bars of 5m), not of one 5m bar: a stop two 5m ranges away sits inside one bar's noise
    and near the round trip's costs, so nearly every trade would be stopped out at a loss."""
    from trading.marketdata.selectors import bars as bars_of
    from trading.models import Symbol

    symbol = Symbol.objects.filter(pk=symbol_id).first()
    if symbol is None:
        return ZERO
    rows = bars_of(symbol, timeframe or getattr(settings, "POSITION_ATR_TIMEFRAME", settings.UNIVERSE_TIMEFRAME),
                   bars + 1)
    if len(rows) < 2:
        return ZERO
    high, low, close = rows[1:, 2], rows[1:, 3], rows[:-1, 4]
    tr = np.maximum(high - low, np.maximum(np.abs(high - close), np.abs(low - close)))
    return to_decimal(float(np.mean(tr)), "ATR")


def take_profit_extend(pos: Position) -> Decimal | None:
    """Move an open position's take-profit one ATR further out (profit amplification); the new
    target, or None when it has none or no ATR is known."""
    if pos.take_profit_price is None:
        return None
    step = atr(pos.symbol_id)
    if step <= 0:
        return None
    new_tp = pos.take_profit_price + step if pos.side == PositionSide.LONG else max(
        pos.symbol.tick_size, pos.take_profit_price - step)
    Position.objects.filter(pk=pos.pk).update(take_profit_price=new_tp)
    return new_tp


def _event_payload_opened(p: Position) -> dict:
    return {
        "position_id": str(p.pk), "symbol": p.symbol.symbol, "side": p.side, "amount": p.amount,
        "entry_price": p.entry_price, "size_usd": (p.amount * p.entry_price).quantize(Decimal("0.01")),
        "leverage": p.leverage, "stop_loss_price": p.stop_loss_price, "take_profit_price": p.take_profit_price,
        "liquidation_price": p.liquidation_price if p.liquidation_price and p.liquidation_price > 0 else None,
        "entry_confidence": float(p.entry_confidence) if p.entry_confidence is not None else None,
        "entry_model": p.entry_model, "opened_at": p.opened_at,
    }


def _margin(p: Position) -> Decimal:
    notional = p.max_amount * p.entry_price
    return notional / max(1, p.leverage)


def _emit(events: list | None, event_type, payload: dict, trace_id: str | None) -> None:
    """Publish now, or collect for the caller's one publish_many (same transaction either way)."""
    if events is None:
        publish(event_type, payload, trace_id=trace_id or None)
    else:
        events.append((event_type, payload))


def _close(p: Position, *, exit_reason: str, now: datetime, events: list | None = None) -> None:
    closed_qty = to_decimal(p.trailing.get("exit_qty", "0"), "exit_qty")
    exit_cost = to_decimal(p.trailing.get("exit_cost", "0"), "exit_cost")
    p.exit_price = (exit_cost / closed_qty) if closed_qty > 0 else p.mark_price or p.entry_price
    p.status = PositionStatus.CLOSED
    p.closed_at = now
    p.exit_reason = exit_reason
    p.unrealized_pnl_usd = ZERO
    p.save()
    margin = _margin(p)
    pnl_pct = float(p.realized_pnl_usd / margin * 100) if margin > 0 else 0.0
    _emit(events, EventType.POSITION_CLOSED, {
        "position_id": str(p.pk), "symbol": p.symbol.symbol, "side": p.side, "amount": p.max_amount,
        "entry_price": p.entry_price, "exit_price": p.exit_price, "pnl_usd": p.realized_pnl_usd,
        "pnl_pct": round(pnl_pct, 6), "fees_usd": p.fees_usd, "exit_reason": exit_reason, "leverage": p.leverage,
        "duration_seconds": max(0.0, (now - p.opened_at).total_seconds()),
        "entry_confidence": float(p.entry_confidence) if p.entry_confidence is not None else None,
        "entry_model": p.entry_model, "opened_at": p.opened_at,
    }, p.trace_id)
    log.info("position closed", position_id=p.pk, symbol=p.symbol.symbol, pnl_usd=str(p.realized_pnl_usd),
             exit_reason=exit_reason)


def _open(*, order: Order, intent: ExecutionIntent | None, side: str, amount: Decimal, price: Decimal,
          fee_usd: Decimal, now: datetime, events: list | None = None) -> Position:
    from risk.services.policy import policy_get

    policy = policy_get()
    sl = intent.stop_loss_price if intent is not None else None
    tp = intent.take_profit_price if intent is not None else None
    if sl is None or tp is None:
        auto_sl, auto_tp = pm.initial_stops(side, price, atr(order.symbol_id),
                                            stop_loss_atr_multiple=policy.stop_loss_atr_multiple,
                                            take_profit_atr_multiple=policy.take_profit_atr_multiple,
                                            tick_size=order.symbol.tick_size)
        sl, tp = sl or auto_sl, tp or auto_tp
    p = Position.objects.create(
        exchange=order.exchange, symbol=order.symbol, side=side, amount=amount, max_amount=amount, entry_price=price,
        leverage=order.leverage, stop_loss_price=sl, take_profit_price=tp, mark_price=price,
        trailing={"best_price": str(price), "break_even_done": False},
        realized_pnl_usd=-fee_usd, fees_usd=fee_usd,
        entry_model=(intent.entry_model if intent else "") or ("external" if order.origin == "external" else "manual"),
        entry_confidence=intent.confidence if intent else None, opened_at=now, trace_id=order.trace_id)
    p.symbol = order.symbol
    _emit(events, EventType.POSITION_OPENED, _event_payload_opened(p), order.trace_id)
    log.info("position opened", position_id=p.pk, symbol=order.symbol.symbol, side=side, amount=str(amount),
             entry_price=str(price))
    return p


def position_apply_fill(*, order: Order, amount: Decimal, price: Decimal, fee_usd: Decimal, now: datetime,
                        events: list | None = None) -> None:
    """Apply one fill of `order` (must run inside a transaction). `events`: collect the
    position events there instead of publishing each (the caller publishes them together)."""
    intent = order.intent
    direction = Side(order.side).opens
    pos = (Position.objects.select_for_update().filter(exchange=order.exchange, symbol=order.symbol,
                                                      status=PositionStatus.OPEN).first())
    if pos is None:
        if order.reduce_only:
            log.warning("reduce-only fill with no open position", client_order_id=order.client_order_id)
            return
        _open(order=order, intent=intent, side=direction, amount=amount, price=price, fee_usd=fee_usd, now=now,
              events=events)
        return
    pos.symbol = order.symbol
    if pos.side == direction:  # adding
        pos.entry_price = pm.average_entry(pos.amount, pos.entry_price, amount, price)
        pos.amount += amount
        pos.max_amount = max(pos.max_amount, pos.amount)
        pos.fees_usd += fee_usd
        pos.realized_pnl_usd -= fee_usd
        pos.save()
        return
    close_qty = min(amount, pos.amount)
    gross = pm.realized_pnl_usd(pos.side, pos.entry_price, price, close_qty, ZERO)
    close_fee = fee_usd * close_qty / amount if amount > 0 else fee_usd
    pos.realized_pnl_usd += gross - close_fee
    pos.fees_usd += close_fee
    pos.amount -= close_qty
    pos.trailing = {**pos.trailing,
                    "exit_qty": str(to_decimal(pos.trailing.get("exit_qty", "0"), "exit_qty") + close_qty),
                    "exit_cost": str(to_decimal(pos.trailing.get("exit_cost", "0"), "exit_cost") + close_qty * price)}
    if pos.amount <= 0:
        pos.amount = ZERO
        reason = (intent.exit_reason if intent is not None and intent.exit_reason else "manual")
        _close(pos, exit_reason=reason, now=now, events=events)
        leftover = amount - close_qty
        if leftover > 0 and not order.reduce_only:
            _open(order=order, intent=intent, side=direction, amount=leftover, price=price,
                  fee_usd=fee_usd - close_fee, now=now, events=events)
    else:
        pos.mark_price = price
        pos.unrealized_pnl_usd = pm.unrealized_pnl_usd(pos.side, pos.entry_price, price, pos.amount)
        pos.save()


def position_close_external(pos: Position, *, reason: str, exit_price: Decimal | None, now: datetime) -> None:
    """Close a position the exchange no longer holds (liquidated, closed by hand elsewhere)."""
    pos = Position.objects.select_for_update(of=("self",)).select_related("symbol").get(pk=pos.pk)
    if pos.status != PositionStatus.OPEN:
        return
    price = exit_price or pos.mark_price or pos.entry_price
    pos.realized_pnl_usd += pm.realized_pnl_usd(pos.side, pos.entry_price, price, pos.amount, ZERO)
    pos.trailing = {**pos.trailing,
                    "exit_qty": str(to_decimal(pos.trailing.get("exit_qty", "0"), "exit_qty") + pos.amount),
                    "exit_cost": str(to_decimal(pos.trailing.get("exit_cost", "0"), "exit_cost") + pos.amount * price)}
    pos.amount = ZERO
    _close(pos, exit_reason=reason, now=now)
