"""Execution in-process on the real paper exchange and PostgreSQL (no workers): intents, the
risk path, strategies, orders, fills, positions, exits, emergency stop, reconciliation."""
from __future__ import annotations

from decimal import Decimal

import pytest

D = Decimal


def manual(key: str, symbol="BTC/USDT:USDT", side="buy", amount="0.05", **kw):
    from trading.execution.services import intent_create, intent_process

    intent, _ = intent_create(key=key, source="manual", symbol=symbol, side=side, amount=D(amount),
                              strategy=kw.pop("strategy", "market"), **kw)
    return intent_process(intent.pk)


def test_a_manual_market_order_fills_and_opens_a_position(paper_market):
    from qtweb.events.models import Event
    from trading.models import Fill, Order, Position

    intent = manual("m1", leverage=3)
    assert intent.status == "done", intent.reason
    order = Order.objects.get(intent=intent)
    assert order.status == "filled" and order.filled == D("0.05") and order.client_order_id.startswith("qt")
    assert Fill.objects.filter(order=order).count() == 1
    pos = Position.objects.get(status="open")
    assert pos.side == "long" and pos.amount == D("0.05") and pos.leverage == 3
    assert pos.stop_loss_price < pos.entry_price < pos.take_profit_price
    assert pos.realized_pnl_usd == -pos.fees_usd and pos.fees_usd > 0
    types = list(Event.objects.order_by("timestamp").values_list("type", flat=True))
    assert "execution.result" in types and "position.opened" in types
    result = Event.objects.get(type="execution.result").payload
    assert result["status"] == "filled" and result["leverage"] == 3 and result["exchange_order_id"]
    assert D(result["filled_size_usd"]) > 0 and result["slippage_pct"] is not None
