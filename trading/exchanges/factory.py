"""get_gateway: the one way the rest of the system obtains an exchange gateway.

``paper`` is the simulated exchange (trading/exchanges/paper/, imported only when asked for);
any id ccxt knows (``binanceusdm``, ``binance``, ...) is a CcxtGateway configured from the
environment (see trading/exchanges/ccxt_backend.py). With no id, settings.MARKET_EXCHANGE.
"""
from __future__ import annotations

from typing import Any

from trading.exchanges import errors
from trading.exchanges.base import ExchangeGateway

PAPER_ID = "paper"


def ccxt_exchange_ids() -> list[str]:
    import ccxt

    return list(ccxt.exchanges)


def get_gateway(exchange_id: str | None = None, **kwargs: Any) -> ExchangeGateway:
    """A gateway for `exchange_id` (default settings.MARKET_EXCHANGE). Keyword arguments go to
    the backend's constructor. Raises errors.NotSupported naming an unknown id."""
    if exchange_id is None:
        from django.conf import settings

        exchange_id = getattr(settings, "MARKET_EXCHANGE", None) or PAPER_ID
    exchange_id = exchange_id.strip()
    if exchange_id == PAPER_ID:
        from trading.exchanges.paper import PaperGateway

        return PaperGateway(**kwargs)
    if exchange_id in ccxt_exchange_ids():
        from trading.exchanges.ccxt_backend import CcxtGateway

        return CcxtGateway(exchange_id, **kwargs)
    raise errors.NotSupported(f"unknown exchange id {exchange_id!r}: use {PAPER_ID!r} or a ccxt exchange id "
                              "such as 'binanceusdm' or 'binance'")
