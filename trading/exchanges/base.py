"""The gateway interface every backend implements, in the shape of ccxt's unified API.

Return values are ccxt-unified structures (plain dicts: order, trade, ticker, OHLCV rows,
balance, position), so strategy code works unchanged on the paper exchange and a real one.
Numbers inside follow ccxt (floats); money math in this system converts to Decimal at the
edge (trading services), using the market's precision.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from core.enums import OrderType, Side

Market = dict[str, Any]
Order = dict[str, Any]
Trade = dict[str, Any]
Ticker = dict[str, Any]
OrderBook = dict[str, Any]
Balance = dict[str, Any]
Position = dict[str, Any]
OHLCV = list[float]  # [timestamp_ms, open, high, low, close, volume]

ORDER_TYPES = tuple(OrderType)
ORDER_SIDES = tuple(Side)


class ExchangeGateway(ABC):
    """One exchange account. Implementations raise trading.exchanges.errors.* only."""

    id: str = "base"
    # Whether fetch_balance()'s quote `total` already includes the unrealized PnL of open
    # perpetual positions (a margin balance, as Binance futures report it) or is the wallet
    # balance (the paper exchange). Equity must not count that PnL twice.
    balance_includes_unrealized_pnl: bool = False

    @abstractmethod
    def load_markets(self, reload: bool = False) -> dict[str, Market]: ...

    @abstractmethod
    def fetch_ticker(self, symbol: str) -> Ticker: ...

    def fetch_tickers(self, symbols: list[str] | None = None) -> dict[str, Ticker]:
        markets = self.load_markets()
        return {s: self.fetch_ticker(s) for s in (symbols or list(markets))}

    @abstractmethod
    def fetch_ohlcv(self, symbol: str, timeframe: str = "5m", since: int | None = None,
                    limit: int | None = None) -> list[OHLCV]: ...

    @abstractmethod
    def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook: ...

    @abstractmethod
    def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                     params: dict | None = None) -> Order:
        """params: `clientOrderId` (unique among open orders), `reduceOnly` (bool)."""

    @abstractmethod
    def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Order: ...

    @abstractmethod
    def fetch_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Order:
        """params: `clientOrderId` to look an order up by the id we gave it."""

    @abstractmethod
    def fetch_open_orders(self, symbol: str | None = None, since: int | None = None,
                          limit: int | None = None) -> list[Order]: ...

    @abstractmethod
    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None,
                        limit: int | None = None) -> list[Trade]: ...

    @abstractmethod
    def fetch_balance(self) -> Balance: ...

    @abstractmethod
    def fetch_positions(self, symbols: list[str] | None = None) -> list[Position]: ...

    @abstractmethod
    def set_leverage(self, leverage: int, symbol: str) -> dict: ...

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release connections (ccxt sessions); the paper exchange has none."""
