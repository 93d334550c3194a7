"""One error taxonomy for every exchange backend.

Each class says whether the caller may try again (`recoverable`). ccxt's exceptions are
mapped onto these in trading/exchanges/ccxt_backend.py; the paper exchange raises them
directly. `OrderOutcomeUnknown` is special: the request may or may not have reached the
exchange (a timeout on create_order), so the caller must look the order up by its
clientOrderId before doing anything else — never treat it as "failed" and re-send blindly.
"""
from __future__ import annotations


class ExchangeError(Exception):
    """Base class. `recoverable`: trying again later may succeed."""

    recoverable = False

    def __init__(self, message: str, *, exchange: str = "", retry_after_seconds: float | None = None):
        self.exchange = exchange
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"[{exchange}] {message}" if exchange else message)


# --- recoverable: network and capacity -------------------------------------------------


class NetworkError(ExchangeError):
    """The request did not complete (connection reset, DNS, bad gateway)."""

    recoverable = True


class RequestTimeout(NetworkError):
    """No answer in time. For a read, retry; for create_order see OrderOutcomeUnknown."""


class RateLimitExceeded(NetworkError):
    """The exchange throttled us (HTTP 429/418). `retry_after_seconds` says when to come back."""


class ExchangeNotAvailable(NetworkError):
    """Exchange down or in maintenance (5xx)."""


class OrderOutcomeUnknown(ExchangeError):
    """create_order did not get an answer: the order may exist. Look it up by clientOrderId.

    Recoverable in the sense that the situation resolves itself, but never by re-sending.
    """

    recoverable = True

    def __init__(self, message: str, *, client_order_id: str, exchange: str = ""):
        self.client_order_id = client_order_id
        super().__init__(message, exchange=exchange)


# --- not recoverable: the request itself is wrong or not allowed ------------------------


class InsufficientFunds(ExchangeError):
    """Not enough balance or margin for the order."""


class InvalidOrder(ExchangeError):
    """The order breaks a market rule (lot size, min notional, price filter, reduce-only)."""


class OrderNotFound(InvalidOrder):
    """No such order (already gone, or never existed)."""


class DuplicateClientOrderId(InvalidOrder):
    """clientOrderId already used by an open order."""


class BadSymbol(ExchangeError):
    """The exchange does not list this symbol."""


class BadTimeframe(ExchangeError):
    """The exchange (or this system) does not support this timeframe."""


class AuthenticationError(ExchangeError):
    """Keys missing, wrong, expired or without the needed permission. An operator must act."""


class NotSupported(ExchangeError):
    """The backend does not implement this call."""


class BadResponse(ExchangeError):
    """The exchange answered something that does not parse or breaks its own contract."""
