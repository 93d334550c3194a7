"""Position status for RPC and the API."""
from __future__ import annotations

import re

from core.enums import PositionStatus
from qtweb.events.schemas import SYMBOL_PATTERN
from trading.models import Position

_SYMBOL = re.compile(SYMBOL_PATTERN)


def position_dict(p: Position) -> dict:
    def s(x):
        return str(x) if x is not None else None

    return {
        "position_id": p.pk, "symbol": p.symbol.symbol, "side": p.side, "status": p.status, "amount": s(p.amount),
        "entry_price": s(p.entry_price), "mark_price": s(p.mark_price), "leverage": p.leverage,
        "stop_loss_price": s(p.stop_loss_price), "take_profit_price": s(p.take_profit_price),
        "trailing": p.trailing, "liquidation_price": s(p.liquidation_price),
        "unrealized_pnl_usd": s(p.unrealized_pnl_usd), "realized_pnl_usd": s(p.realized_pnl_usd),
        "fees_usd": s(p.fees_usd), "entry_model": p.entry_model, "entry_confidence": s(p.entry_confidence),
        "opened_at": p.opened_at.isoformat() if p.opened_at else None,
        "closed_at": p.closed_at.isoformat() if p.closed_at else None, "exit_price": s(p.exit_price),
        "exit_reason": p.exit_reason, "trace_id": p.trace_id,
    }


def position_status(symbol: str) -> dict:
    """{"symbol", "open": bool, "position": {...} | None, "last_closed": {...} | None}."""
    from trading.exchanges.account import exchange_id

    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValueError(f"symbol must be a unified symbol such as BTC/USDT:USDT, got {symbol!r}")
    qs = Position.objects.filter(exchange=exchange_id(), symbol__symbol=symbol).select_related("symbol")
    open_ = qs.filter(status=PositionStatus.OPEN).first()
    last = qs.filter(status=PositionStatus.CLOSED).order_by("-closed_at").first()
    return {"symbol": symbol, "open": open_ is not None, "position": position_dict(open_) if open_ else None,
            "last_closed": position_dict(last) if last else None}
