"""Read-only questions to the risk layer (RPC validate_risk, the API's what-if)."""
from __future__ import annotations

import re
from decimal import Decimal

from core.decimals import to_decimal
from core.enums import Side
from qtweb.events.schemas import SYMBOL_PATTERN

_SYMBOL = re.compile(SYMBOL_PATTERN)


def _size(value) -> Decimal:
    try:
        size = to_decimal(value, "size_usd")
    except ValueError:
        raise ValueError(f"size_usd must be a number, got {value!r}") from None
    if size <= 0:
        raise ValueError(f"size_usd must be a positive number, got {value!r}")
    return size


def validate_risk(*, symbol: str, size_usd, leverage=1, side: str = Side.BUY) -> dict:
    """{approved, reason, max_allowed_size, reasons, policy_version} for an entry of `size_usd`
    on `symbol` now. ValueError (-> RPC bad params) names a malformed argument."""
    from risk.services.validation import IntentRequest, intent_validate
    from trading.models import Symbol
    from trading.selectors import execution_exchange as exchange_id

    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValueError(f"symbol must be a unified symbol such as BTC/USDT:USDT, got {symbol!r}")
    size = _size(size_usd)
    if isinstance(leverage, bool) or not isinstance(leverage, int | str):
        raise ValueError(f"leverage must be a whole number, got {leverage!r}")
    try:
        lev = int(leverage)
    except ValueError:
        raise ValueError(f"leverage must be a whole number, got {leverage!r}") from None
    if side not in set(Side):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    sym = Symbol.objects.filter(exchange=exchange_id(), symbol=symbol).first()
    if sym is None:
        raise ValueError(f"unknown symbol {symbol!r} on {exchange_id()}")
    verdict, _ = intent_validate(IntentRequest(symbol=symbol, side=side, size_usd=size, leverage=lev,
                                               source="rpc"), symbol=sym, record=False, alert=False)
    return {"approved": verdict.approved, "reason": verdict.reason,
            "max_allowed_size": str(verdict.max_allowed_size_usd),
            "reasons": [{"rule": r.rule, "message": r.message} for r in verdict.reasons],
            "policy_version": verdict.policy_version}
