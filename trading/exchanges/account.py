"""The execution account's exchange gateway: one per process, for settings.EXECUTION_EXCHANGE
(default: MARKET_EXCHANGE; the paper exchange trades the paper account EXECUTION_ACCOUNT).

It sits with the exchanges, below risk and execution, because both read the account through
it: risk to value it (trading/selectors.py account_view), execution to trade on it."""
from __future__ import annotations

import threading

from django.conf import settings

from trading.exchanges.base import ExchangeGateway
from trading.exchanges.factory import PAPER_ID, get_gateway

# A longer Retry-After is waited out by a task retry (ExecutionRetry), never by a worker
# asleep inside the gateway.
MAX_INLINE_WAIT_SECONDS = 2.0

_lock = threading.Lock()
_gateway: ExchangeGateway | None = None
_override: ExchangeGateway | None = None


def exchange_id() -> str:
    if _override is not None:
        return _override.id
    return getattr(settings, "EXECUTION_EXCHANGE", "") or settings.MARKET_EXCHANGE or PAPER_ID


def execution_gateway() -> ExchangeGateway:
    global _gateway
    if _override is not None:
        return _override
    with _lock:
        if _gateway is None:
            eid = exchange_id()
            if eid == PAPER_ID:
                kwargs = {"account": settings.EXECUTION_ACCOUNT}
            else:
                kwargs = {"max_retry_after_seconds": MAX_INLINE_WAIT_SECONDS}
            _gateway = get_gateway(eid, **kwargs)
        return _gateway


def use_gateway(gateway: ExchangeGateway | None) -> None:
    """Tests and tools: trade on this gateway instead (None restores the configured one)."""
    global _override, _gateway
    _override = gateway
    _gateway = None


def reload() -> None:
    """Drop this process's exchange connection and what it learned from it (markets, the paper
    account, leverage already set) and require a fresh reconciliation before the next order.
    For operators after a configuration change (keys, account) — and for tests, whose database
    is rebuilt under a running worker."""
    global _gateway
    from qtweb.lifecycle import reset_process_memos

    with _lock:
        if _gateway is not None:
            try:
                _gateway.close()
            except Exception:
                pass
        _gateway = None
    reset_process_memos()  # what the apps memoised about this exchange and account
