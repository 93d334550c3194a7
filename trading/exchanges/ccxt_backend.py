"""The ccxt backend: any exchange ccxt knows, behind ExchangeGateway.

Configuration (constructor arguments win; then Django settings of the same name, if defined;
then the environment):

    EXCHANGE_ID              ccxt exchange id; default ``binanceusdm`` (Binance USDⓈ-M futures).
                             ``binance`` is Binance spot.
    EXCHANGE_SANDBOX         true: trade on the exchange's test environment. Binance spot uses
                             its testnet (testnet.binance.vision); Binance USDⓈ-M / COIN-M use
                             Binance demo trading (demo-fapi.binance.com), which ccxt recommends
                             since the futures testnet was retired; other exchanges use ccxt's
                             set_sandbox_mode.
    EXCHANGE_BASE_URL        optional: replace scheme and host of every REST URL (keeping the
                             path), e.g. http://127.0.0.1:PORT for a local fake exchange.
    EXCHANGE_TIMEOUT_MS      per-request timeout, default 10000.

Credentials come from the environment only, never from arguments, settings or files:

    EXCHANGE_API_KEY, EXCHANGE_API_SECRET    (and EXCHANGE_API_PASSWORD for exchanges with a
                                             passphrase, e.g. okx)

They are never logged (a filter redacts them from every record of this module's loggers,
including ccxt's request dumps at DEBUG level, which carry the X-MBX-APIKEY header), never
appear in repr()/str() of the gateway and are scrubbed from every error message.

Behaviour:

- ccxt's rate limiter is always on (``enableRateLimit``); ``rate_limit_ms`` only changes its
  spacing.
- Every ccxt exception is mapped onto trading.exchanges.errors (CCXT_ERROR_MAP, subclasses
  first). For Binance, the error code in the answer is looked at first (BINANCE_ERROR_CODES),
  because ccxt only applies its per-market-type code tables to the official hostnames.
- Reads (load_markets, fetch_*) and set_leverage are retried on recoverable errors with
  exponential backoff, up to ``max_tries`` tries. A 429/418 answer's Retry-After is honoured
  (never sleep less); a Retry-After above ``max_retry_after_seconds`` is not slept through —
  RateLimitExceeded is raised with ``retry_after_seconds`` for the caller to decide.
- create_order is never retried blindly. Every order carries a clientOrderId (the caller's, or
  one generated here), sent to Binance as ``newClientOrderId``. A timeout, network error, 5xx
  or unparseable answer raises OrderOutcomeUnknown with that clientOrderId: look the order up
  with ``fetch_order(None, symbol, {"clientOrderId": ...})``. Only a rate-limit rejection
  (429/418: the exchange refused the request) is retried, after Retry-After. cancel_order
  follows the same rule (a lost cancel answer raises the mapped error, not a second cancel).
- An unknown symbol raises BadSymbol naming it; an unknown timeframe BadTimeframe naming it.
- Markets are returned with precision as tick sizes (ccxt's TICK_SIZE mode, Binance's own);
  markets of exchanges that count decimal places are converted.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import ccxt

from core.enums import OrderType, PositionSide
from trading.exchanges import errors
from trading.exchanges.base import (
    OHLCV,
    ORDER_SIDES,
    ORDER_TYPES,
    Balance,
    ExchangeGateway,
    Market,
    Order,
    OrderBook,
    Position,
    Ticker,
    Trade,
)

log = logging.getLogger(__name__)
# ccxt logs every request and answer (with headers) at DEBUG on the logger it is given.
http_log = logging.getLogger(__name__ + ".http")

DEFAULT_EXCHANGE_ID = "binanceusdm"
BINANCE_FUTURES_IDS = frozenset({"binanceusdm", "binancecoinm"})
BINANCE_IDS = frozenset({"binance", "binanceus", *BINANCE_FUTURES_IDS})

# ccxt exception -> taxonomy. Order matters: the first entry the exception is an instance of
# wins, so every subclass comes before its base classes (a test checks this).
CCXT_ERROR_MAP: tuple[tuple[type[Exception], type[errors.ExchangeError]], ...] = (
    (ccxt.DuplicateOrderId, errors.DuplicateClientOrderId),
    (ccxt.OrderNotFound, errors.OrderNotFound),
    (ccxt.OrderNotCached, errors.OrderNotFound),
    (ccxt.InsufficientFunds, errors.InsufficientFunds),
    (ccxt.InvalidOrder, errors.InvalidOrder),  # OrderImmediatelyFillable, OrderNotFillable, ...
    (ccxt.BadSymbol, errors.BadSymbol),
    (ccxt.ArgumentsRequired, errors.NotSupported),  # e.g. Binance cannot fetch_order without a symbol
    (ccxt.AuthenticationError, errors.AuthenticationError),  # PermissionDenied, AccountSuspended
    (ccxt.NotSupported, errors.NotSupported),
    (ccxt.MarketClosed, errors.InvalidOrder),
    (ccxt.OperationRejected, errors.InvalidOrder),  # the exchange refused this request as such
    (ccxt.BadRequest, errors.InvalidOrder),
    (ccxt.RateLimitExceeded, errors.RateLimitExceeded),
    (ccxt.DDoSProtection, errors.RateLimitExceeded),  # ccxt's class for HTTP 418/429
    (ccxt.RequestTimeout, errors.RequestTimeout),
    (ccxt.ExchangeNotAvailable, errors.ExchangeNotAvailable),  # 5xx, OnMaintenance
    (ccxt.InvalidNonce, errors.NetworkError),  # clock skew / recvWindow: a new request may pass
    (ccxt.NetworkError, errors.NetworkError),
    (ccxt.BadResponse, errors.BadResponse),  # NullResponse
    (ccxt.OperationFailed, errors.ExchangeNotAvailable),  # CancelPending, "unknown error, try again"
    (ccxt.ExchangeError, errors.ExchangeError),
    (ccxt.BaseError, errors.ExchangeError),
)

# Binance error codes whose meaning is unambiguous across spot and futures.
BINANCE_ERROR_CODES: dict[int, type[errors.ExchangeError]] = {
    -1001: errors.ExchangeNotAvailable,  # internal error / disconnected
    -1003: errors.RateLimitExceeded,  # too many requests
    -1007: errors.RequestTimeout,  # backend timeout: execution status unknown
    -1008: errors.ExchangeNotAvailable,  # server overloaded
    -1013: errors.InvalidOrder,  # invalid quantity / filter failure
    -1015: errors.RateLimitExceeded,  # too many new orders
    -1022: errors.AuthenticationError,  # signature not valid
    -1111: errors.InvalidOrder,  # precision over the maximum
    -1116: errors.InvalidOrder,  # invalid order type
    -1117: errors.InvalidOrder,  # invalid side
    -1120: errors.BadTimeframe,  # invalid interval
    -1121: errors.BadSymbol,  # invalid symbol
    -2011: errors.OrderNotFound,  # cancel: unknown order
    -2013: errors.OrderNotFound,  # order does not exist
    -2014: errors.AuthenticationError,  # API-key format invalid
    -2015: errors.AuthenticationError,  # invalid API-key, IP, or permissions
    -2019: errors.InsufficientFunds,  # margin is insufficient
    -2022: errors.InvalidOrder,  # reduce-only rejected
    -4003: errors.InvalidOrder,  # quantity <= 0
    -4014: errors.InvalidOrder,  # price not a multiple of the tick
    -4050: errors.InsufficientFunds,  # cross balance insufficient
    -4051: errors.InsufficientFunds,  # isolated balance insufficient
    -4116: errors.DuplicateClientOrderId,  # clientOrderId is duplicated
    -4164: errors.InvalidOrder,  # notional below the minimum
}
_BINANCE_BODY = re.compile(r'\{\s*"code"\s*:\s*(-?\d+)\s*,\s*"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')

# Credentials of every gateway in this process, redacted from log records and error texts.
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_REDACTED = "***"


def _redact(text: str) -> str:
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, _REDACTED)
    return text


class _RedactSecrets(logging.Filter):
    """Rewrites a record whose message contains a registered credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = _redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_redact_filter = _RedactSecrets()
for _logger in (log, http_log):
    if not any(isinstance(f, _RedactSecrets) for f in _logger.filters):
        _logger.addFilter(_redact_filter)


def _setting(name: str, default: Any = None) -> Any:
    try:
        from django.conf import settings

        if settings.configured and hasattr(settings, name):
            value = getattr(settings, name)
            if value not in (None, ""):
                return value
    except ImportError:  # pragma: no cover - Django is always installed here
        pass
    value = os.environ.get(name, "")
    return value if value != "" else default


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def new_client_order_id() -> str:
    """A fresh id Binance accepts (^[.A-Z:/a-z0-9_-]{1,36}$): 'qt' + 32 hex digits."""
    return "qt" + uuid.uuid4().hex


def _rewrite_host(url: str, base: str) -> str:
    parts = urlsplit(url)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _rewrite_urls(api: Any, base: str) -> Any:
    if isinstance(api, str):
        return _rewrite_host(api, base)
    if isinstance(api, dict):
        return {k: _rewrite_urls(v, base) for k, v in api.items()}
    return api


class CcxtGateway(ExchangeGateway):
    """One account on one ccxt exchange. Not thread-safe: one gateway per worker thread."""

    def __init__(
        self,
        exchange_id: str | None = None,
        *,
        sandbox: bool | None = None,
        urls: str | dict | None = None,
        timeout_ms: int | None = None,
        rate_limit_ms: float | None = None,
        max_tries: int = 4,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        max_retry_after_seconds: float = 60.0,
        options: dict | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        exchange_id = exchange_id or _setting("EXCHANGE_ID") or DEFAULT_EXCHANGE_ID
        if exchange_id not in ccxt.exchanges:
            close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise errors.NotSupported(f"unknown ccxt exchange id {exchange_id!r}{hint}")
        self.id = exchange_id
        self.sandbox = _as_bool(_setting("EXCHANGE_SANDBOX", False)) if sandbox is None else bool(sandbox)
        self.max_tries = max(1, int(max_tries))
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self._sleep = sleep
        self._markets_source: dict | None = None
        self._markets: dict[str, Market] = {}

        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(timeout_ms or _setting("EXCHANGE_TIMEOUT_MS", 10_000)),
            "logger": http_log,
            "options": {},
        }
        if exchange_id in BINANCE_IDS:
            # We always pass a symbol when we can; without one Binance answers (weight 40), and
            # ccxt's guard would otherwise refuse the call outright.
            config["options"]["warnOnFetchOpenOrdersWithoutSymbol"] = False
        config["options"].update(options or {})
        credentials = {
            "apiKey": os.environ.get("EXCHANGE_API_KEY", ""),
            "secret": os.environ.get("EXCHANGE_API_SECRET", ""),
            "password": os.environ.get("EXCHANGE_API_PASSWORD", ""),
        }
        for field, value in credentials.items():
            if value:
                config[field] = value
                with _SECRETS_LOCK:
                    _SECRETS.add(value)
        self.has_credentials = bool(credentials["apiKey"] and credentials["secret"])

        self._exchange = getattr(ccxt, exchange_id)(config)
        # ccxt's derivatives balances (Binance USD-M/COIN-M: `marginBalance`) already include
        # the unrealized PnL of open positions; spot balances are wallet amounts.
        self.balance_includes_unrealized_pnl = str(
            (self._exchange.options or {}).get("defaultType", "spot")) in ("future", "swap", "delivery")
        if rate_limit_ms is not None:
            self._exchange.rateLimit = float(rate_limit_ms)
        if self.sandbox:
            try:
                if exchange_id in BINANCE_FUTURES_IDS:
                    self._exchange.enable_demo_trading(True)
                else:
                    self._exchange.set_sandbox_mode(True)
            except ccxt.BaseError as exc:
                raise self._map(exc) from None
        urls = urls if urls is not None else _setting("EXCHANGE_BASE_URL")
        if isinstance(urls, str):
            self._exchange.urls["api"] = _rewrite_urls(self._exchange.urls["api"], urls)
        elif isinstance(urls, dict):
            self._exchange.urls["api"] = {**self._exchange.urls["api"], **urls}

    def __repr__(self) -> str:
        return (f"<CcxtGateway {self.id} sandbox={self.sandbox} "
                f"credentials={'set' if self.has_credentials else 'none'}>")

    __str__ = __repr__

    # --- errors and retries ----------------------------------------------------------------

    def _retry_after(self) -> float | None:
        headers = self._exchange.last_response_headers or {}
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # an HTTP date: rare from exchanges; fall back to the backoff

    def _map(self, exc: BaseException) -> errors.ExchangeError:
        """The taxonomy error for a ccxt (or parsing) exception, credentials scrubbed."""
        message = _redact(str(exc)) or type(exc).__name__
        message = message.removeprefix(f"{self.id} ")  # ccxt starts its messages with the id; so do we
        cls: type[errors.ExchangeError] | None = None
        if self.id in BINANCE_IDS:
            m = _BINANCE_BODY.search(message)
            if m:
                code, msg = int(m.group(1)), m.group(2).lower()
                if code == -2010:  # NEW_ORDER_REJECTED: the message says why
                    cls = (errors.InsufficientFunds if "insufficient" in msg
                           else errors.DuplicateClientOrderId if "duplicate" in msg else errors.InvalidOrder)
                else:
                    cls = BINANCE_ERROR_CODES.get(code)
        if cls is None:
            if isinstance(exc, ccxt.BaseError):
                cls = next(target for source, target in CCXT_ERROR_MAP if isinstance(exc, source))
            else:  # ccxt choked on the answer (a KeyError/TypeError/ValueError in its parser)
                cls = errors.BadResponse
                message = f"could not parse the answer: {type(exc).__name__}: {message}"
        retry_after = self._retry_after() if issubclass(cls, errors.RateLimitExceeded) else None
        err = cls(message, exchange=self.id)
        err.retry_after_seconds = retry_after
        return err

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return base + random.uniform(0, base * 0.1)

    def _invoke(self, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ccxt.BaseError as exc:
            raise self._map(exc) from exc
        except (KeyError, TypeError, ValueError, IndexError, json.JSONDecodeError) as exc:
            raise self._map(exc) from exc

    def _read(self, what: str, fn: Callable, *args, **kwargs):
        """Call a read; retry recoverable errors with backoff, honouring Retry-After."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._invoke(fn, *args, **kwargs)
            except errors.ExchangeError as err:
                if not err.recoverable or attempt >= self.max_tries:
                    raise
                delay = self._delay(err, attempt)
                if delay is None:
                    raise
                log.warning("%s %s failed (%s), try %d/%d in %.2fs: %s", self.id, what, type(err).__name__,
                            attempt, self.max_tries, delay, err)
                self._sleep(delay)

    def _delay(self, err: errors.ExchangeError, attempt: int) -> float | None:
        """Seconds to wait before the next try; None if Retry-After is beyond our patience."""
        delay = self._backoff(attempt)
        if err.retry_after_seconds is not None:
            if err.retry_after_seconds > self.max_retry_after_seconds:
                return None
            delay = max(delay, err.retry_after_seconds)
        return delay

    def _write(self, what: str, fn: Callable, *args, **kwargs):
        """Call a write; retry only a rate-limit rejection (the exchange did not act on it)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._invoke(fn, *args, **kwargs)
            except errors.RateLimitExceeded as err:
                if attempt >= self.max_tries:
                    raise
                delay = self._delay(err, attempt)
                if delay is None:
                    raise
                log.warning("%s %s rejected by the rate limit, try %d/%d in %.2fs", self.id, what, attempt,
                            self.max_tries, delay)
                self._sleep(delay)

    # --- validation ------------------------------------------------------------------------

    def _market(self, symbol: str) -> Market:
        markets = self.load_markets()
        market = markets.get(symbol)
        if market is None:
            close = difflib.get_close_matches(str(symbol), list(markets), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise errors.BadSymbol(f"unknown symbol {symbol!r} on {self.id}{hint}", exchange=self.id)
        return market

    def _timeframe(self, timeframe: str) -> str:
        supported = self._exchange.timeframes or {}
        if timeframe not in supported:
            raise errors.BadTimeframe(f"unknown timeframe {timeframe!r} on {self.id}; supported: "
                                      f"{', '.join(supported)}", exchange=self.id)
        return timeframe

    def _normalize_market(self, market: Market) -> Market:
        m = dict(market)
        mode = self._exchange.precisionMode
        if mode == ccxt.DECIMAL_PLACES:
            precision = dict(m.get("precision") or {})
            for key, value in precision.items():
                if isinstance(value, int | float):
                    precision[key] = float(10 ** -int(value))
            m["precision"] = precision
        elif mode == ccxt.SIGNIFICANT_DIGITS:
            m["precision"] = {k: None for k in (m.get("precision") or {})}  # not expressible as a tick
        return m

    # --- the interface ---------------------------------------------------------------------

    def load_markets(self, reload: bool = False) -> dict[str, Market]:
        source = self._read("load_markets", self._exchange.load_markets, reload)
        if source is not self._markets_source or reload:
            self._markets = {s: self._normalize_market(m) for s, m in source.items()}
            self._markets_source = source
        return self._markets

    def fetch_ticker(self, symbol: str) -> Ticker:
        self._market(symbol)
        return self._read("fetch_ticker", self._exchange.fetch_ticker, symbol)

    def fetch_tickers(self, symbols: list[str] | None = None) -> dict[str, Ticker]:
        for s in symbols or []:
            self._market(s)
        if not self._exchange.has.get("fetchTickers"):
            return super().fetch_tickers(symbols)
        return self._read("fetch_tickers", self._exchange.fetch_tickers, symbols)

    def fetch_ohlcv(self, symbol: str, timeframe: str = "5m", since: int | None = None,
                    limit: int | None = None) -> list[OHLCV]:
        self._market(symbol)
        self._timeframe(timeframe)
        return self._read("fetch_ohlcv", self._exchange.fetch_ohlcv, symbol, timeframe, since, limit)

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook:
        self._market(symbol)
        return self._read("fetch_order_book", self._exchange.fetch_order_book, symbol, limit)

    def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                     params: dict | None = None) -> Order:
        if type not in ORDER_TYPES:
            raise errors.InvalidOrder(f"unknown order type {type!r}; supported: {', '.join(ORDER_TYPES)}",
                                      exchange=self.id)
        if side not in ORDER_SIDES:
            raise errors.InvalidOrder(f"unknown order side {side!r}; supported: {', '.join(ORDER_SIDES)}",
                                      exchange=self.id)
        if type == OrderType.LIMIT and price is None:
            raise errors.InvalidOrder("a limit order needs a price", exchange=self.id)
        self._market(symbol)
        params = dict(params or {})
        client_order_id = params.pop("clientOrderId", None) or params.pop("newClientOrderId", None)
        client_order_id = str(client_order_id) if client_order_id else new_client_order_id()
        # ccxt sends params['clientOrderId'] to Binance as newClientOrderId.
        params["clientOrderId"] = client_order_id
        try:
            return self._write("create_order", self._exchange.create_order, symbol, type, side, amount, price,
                               params)
        except errors.RateLimitExceeded:
            raise  # rejected by the exchange: nothing was placed
        except (errors.NetworkError, errors.BadResponse) as err:
            raise errors.OrderOutcomeUnknown(
                f"create_order {side} {amount} {symbol} got no usable answer ({err.__class__.__name__}: {err}); "
                f"look the order up by clientOrderId {client_order_id!r} before doing anything else",
                client_order_id=client_order_id, exchange=self.id,
            ) from err

    def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Order:
        if symbol is not None:
            self._market(symbol)
        return self._write("cancel_order", self._exchange.cancel_order, id, symbol, dict(params or {}))

    def fetch_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Order:
        if symbol is not None:
            self._market(symbol)
        return self._read("fetch_order", self._exchange.fetch_order, id, symbol, dict(params or {}))

    def fetch_open_orders(self, symbol: str | None = None, since: int | None = None,
                          limit: int | None = None) -> list[Order]:
        if symbol is not None:
            self._market(symbol)
        return self._read("fetch_open_orders", self._exchange.fetch_open_orders, symbol, since, limit)

    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None,
                        limit: int | None = None) -> list[Trade]:
        if symbol is not None:
            self._market(symbol)
        return self._read("fetch_my_trades", self._exchange.fetch_my_trades, symbol, since, limit)

    def fetch_balance(self) -> Balance:
        return self._read("fetch_balance", self._exchange.fetch_balance)

    def fetch_positions(self, symbols: list[str] | None = None) -> list[Position]:
        for s in symbols or []:
            self._market(s)
        positions = self._read("fetch_positions", self._exchange.fetch_positions, symbols)
        self._fill_leverage(positions)
        return positions

    def _fill_leverage(self, positions: list[Position]) -> None:
        """Binance's v3 position risk no longer carries leverage: take it from the symbol
        configuration (fetch_leverages, one request) so every position says its leverage."""
        unknown = sorted({p["symbol"] for p in positions if p.get("leverage") is None and p.get("symbol")})
        if not unknown or not self._exchange.has.get("fetchLeverages"):
            return
        try:
            leverages = self._read("fetch_leverages", self._exchange.fetch_leverages, unknown)
        except errors.ExchangeError as err:
            log.warning("%s: leverage of %s unknown (%s)", self.id, ", ".join(unknown), err)
            return
        for p in positions:
            lev = leverages.get(p.get("symbol")) if p.get("leverage") is None else None
            if lev:
                value = lev.get("shortLeverage") if p.get("side") == PositionSide.SHORT else lev.get("longLeverage")
                p["leverage"] = float(value) if value is not None else None

    def set_leverage(self, leverage: int, symbol: str) -> dict:
        self._market(symbol)
        # Idempotent (it sets a value), so retried like a read.
        return self._read("set_leverage", self._exchange.set_leverage, leverage, symbol)

    def close(self) -> None:
        try:
            self._exchange.close()
        except Exception:  # closing a session must never raise into the caller
            log.debug("closing the %s session failed", self.id, exc_info=True)

    # --- helpers for callers that need market rules in this system's terms ---------------------

    def market_rules(self, symbol: str) -> dict[str, Any]:
        """tick size, lot size and min notional of a market as floats (None when unknown)."""
        m = self._market(symbol)
        precision, limits = m.get("precision") or {}, m.get("limits") or {}
        return {
            "tick_size": precision.get("price"),
            "lot_size": precision.get("amount"),
            "min_notional": (limits.get("cost") or {}).get("min"),
        }
