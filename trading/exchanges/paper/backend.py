"""PaperGateway: the simulated exchange behind the ccxt-shaped gateway interface.

State lives in the database (PaperAccount and friends), so a new instance — another
process, or the same one after a restart — sees the same balances, orders and positions.
Market data comes from the Candle table of exchange "paper" (the simulator or imports);
fills follow engine.py, writes go through services.py and ledger.py (one locked transaction
each); new bars reach the accounts through bars.on_new_bars.

    gw = PaperGateway("default")            # the account must exist: services.create_account
    gw.create_order("BTC/USDT", "market", "buy", 0.01)

Constructor options: `config` (engine.FillConfig; default from settings.PAPER_EXCHANGE),
`timeframe` (the bar size fills use; default: the finest stored per symbol), `clock`
(a callable returning an aware datetime; tests pin it).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from core.enums import OrderType
from trading.exchanges.base import (
    OHLCV,
    Balance,
    ExchangeGateway,
    Market,
    Order,
    OrderBook,
    Position,
    Ticker,
    Trade,
)
from trading.exchanges.errors import ExchangeNotAvailable, InvalidOrder
from trading.exchanges.paper import engine, services, structures
from trading.exchanges.paper import selectors as sel
from trading.marketdata import selectors as md
from trading.marketdata import timeframes
from trading.models import Candle, PaperBalance, PaperOrder, PaperPosition, PaperTrade, Symbol

# ccxt's Binance returns 500 candles when no limit is given, and at most 1500.
DEFAULT_OHLCV_LIMIT = 500
MAX_OHLCV_LIMIT = 1500
DEFAULT_BOOK_LEVELS = 20
TICKER_WINDOW_MS = 24 * 3600 * 1000  # ticker statistics cover the last 24 hours, as on every exchange


class PaperGateway(ExchangeGateway):
    id = "paper"

    def __init__(self, account: str = "default", *, config: engine.FillConfig | None = None,
                 timeframe: str | None = None, clock: Callable[[], datetime] | None = None):
        self.account_name = account
        self.config = config or sel.default_config()
        self.timeframe = timeframe
        self._clock = clock or timezone.now
        self._account_id: int | None = None
        self._symbols: dict[str, Symbol] = {}
        self._markets: dict[str, Market] | None = None
        self._timeframes: dict[int, str] = {}

    # --- helpers -------------------------------------------------------------------------

    @property
    def account_id(self) -> int:
        if self._account_id is None:
            self._account_id = services.account_get(self.account_name).pk
        return self._account_id

    def _now_ms(self) -> int:
        return timeframes.to_ms(self._clock())

    def _symbol(self, name: str) -> Symbol:
        if name not in self._symbols:
            self._symbols[name] = sel.get_symbol(name)
        return self._symbols[name]

    def _tf(self, symbol: Symbol) -> str:
        if symbol.pk not in self._timeframes:
            self._timeframes[symbol.pk] = sel.bar_timeframe(symbol, self.timeframe)
        return self._timeframes[symbol.pk]

    def _conditions(self, symbol: Symbol) -> engine.MarketConditions:
        return sel.conditions(symbol, self._tf(symbol), self.config.volatility_window_bars)

    def _order_dict(self, order: PaperOrder, trades=None) -> Order:
        return structures.order(order, order.symbol.symbol, order.trades.all() if trades is None else trades)

    # --- markets and market data -----------------------------------------------------------

    def load_markets(self, reload: bool = False) -> dict[str, Market]:
        if self._markets is None or reload:
            self._symbols = sel.paper_symbols()
            self._markets = {name: structures.market(s, self.config) for name, s in self._symbols.items()}
        return self._markets

    def fetch_ticker(self, symbol: str) -> Ticker:
        sym = self._symbol(symbol)
        tf = self._tf(sym)
        bar_ms = timeframes.milliseconds(tf)
        rows = sel.recent_bars(sym, tf, max(TICKER_WINDOW_MS // bar_ms, self.config.volatility_window_bars))
        cond = engine.conditions_from_bars(rows, bar_ms, self.config.volatility_window_bars)
        if cond is None:
            raise ExchangeNotAvailable(f"no market data for {symbol} yet", exchange=self.id)
        window = rows[rows[:, 0] >= rows[-1, 0] + bar_ms - TICKER_WINDOW_MS]
        market = sel.market_spec(sym)
        bid, ask = engine.best_bid_ask(cond.last_price, cond.volatility, market, self.config)
        book = engine.synthesize_book(cond, market, self.config, levels=1)  # the top of the book
        open_dec = engine.to_decimal(float(window[0, 1]))
        open_, last = float(open_dec), float(cond.last_price)
        base_volume = float(window[:, 5].sum())
        quote_volume = float((window[:, 5] * window[:, 4]).sum())  # each bar's volume at its close
        change = float(cond.last_price - open_dec)
        return {
            "info": {"bars": len(window), "timeframe": tf, "volatility": str(cond.volatility)},
            "symbol": symbol,
            "timestamp": cond.market_time_ms,
            "datetime": structures.iso(cond.market_time_ms),
            "high": float(window[:, 2].max()),
            "low": float(window[:, 3].min()),
            "bid": float(bid),
            "bidVolume": float(book.bids[0][1]),
            "ask": float(ask),
            "askVolume": float(book.asks[0][1]),
            "vwap": quote_volume / base_volume if base_volume > 0 else None,
            "open": open_,
            "close": last,
            "last": last,
            "previousClose": None,
            "change": change,
            "percentage": float((cond.last_price - open_dec) / open_dec * 100),
            "average": (open_ + last) / 2,
            "baseVolume": base_volume,
            "quoteVolume": quote_volume,
            "markPrice": last if sym.settle else None,
            "indexPrice": None,
        }

    def fetch_tickers(self, symbols: list[str] | None = None) -> dict[str, Ticker]:
        """Every market with data when `symbols` is None (markets without candles are left
        out); the named ones otherwise (one without data raises)."""
        if symbols is not None:
            return {s: self.fetch_ticker(s) for s in symbols}
        out = {}
        for name in self.load_markets():
            try:
                out[name] = self.fetch_ticker(name)
            except ExchangeNotAvailable:
                continue
        return out

    def fetch_ohlcv(self, symbol: str, timeframe: str = "5m", since: int | None = None,
                    limit: int | None = None) -> list[OHLCV]:
        """Stored bars, or bars resampled from the finest stored timeframe that divides
        `timeframe` (complete buckets only). Oldest first, at most `limit` (500 by default)."""
        sym = self._symbol(symbol)
        timeframes.seconds(timeframe)
        limit = min(limit or DEFAULT_OHLCV_LIMIT, MAX_OHLCV_LIMIT)
        if since is None:
            rows = md.bars(sym, timeframe, limit)
        else:
            source = timeframes.finest_source(timeframe, md.stored_timeframes(sym.pk))
            if source is None:
                return []
            factor = timeframes.seconds(timeframe) // timeframes.seconds(source)
            start = timeframes.to_datetime(timeframes.floor_ms(int(since), timeframe))
            qs = (Candle.objects.filter(symbol=sym, timeframe=source, open_time__gte=start).order_by("open_time")
                  .values_list("open_time", "open", "high", "low", "close", "volume")[: (limit + 1) * factor])
            raw = [(timeframes.to_ms(t), float(o), float(h), float(lo), float(c), float(v))
                   for t, o, h, lo, c, v in qs]
            rows = timeframes.resample(raw, source, timeframe) if factor > 1 else raw
            rows = [r for r in rows if r[0] >= int(since)][:limit]
        return [[int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])] for r in rows]

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook:
        """Synthesized around the last price from the fill model (see engine.synthesize_book)."""
        sym = self._symbol(symbol)
        cond = self._conditions(sym)
        book = engine.synthesize_book(cond, sel.market_spec(sym), self.config, levels=limit or DEFAULT_BOOK_LEVELS)
        return {
            "symbol": symbol,
            "bids": [[float(p), float(q)] for p, q in book.bids],
            "asks": [[float(p), float(q)] for p, q in book.asks],
            "timestamp": cond.market_time_ms,
            "datetime": structures.iso(cond.market_time_ms),
            "nonce": None,
        }

    # --- trading -------------------------------------------------------------------------

    def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                     params: dict | None = None) -> Order:
        params = params or {}
        unknown = set(params) - {"clientOrderId", "reduceOnly", "timeInForce"}
        if unknown:
            raise InvalidOrder(f"unsupported order params: {', '.join(sorted(unknown))}", exchange=self.id)
        tif = params.get("timeInForce")
        if tif is not None and tif != ("IOC" if type == OrderType.MARKET else "GTC"):
            raise InvalidOrder(f"timeInForce {tif!r} is not supported for {type} orders on {self.id}",
                               exchange=self.id)
        sym = self._symbol(symbol)
        result = services.order_create(
            account_id=self.account_id, symbol=sym, type=type, side=side, amount=amount, price=price,
            client_order_id=params.get("clientOrderId"), reduce_only=params.get("reduceOnly", False),
            timeframe=self._tf(sym), config=self.config, now=self._clock())
        return self._order_dict(result.order, result.trades)

    def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Order:
        params = params or {}
        result = services.order_cancel(
            account_id=self.account_id, order_id=id if id else None, client_order_id=params.get("clientOrderId"),
            symbol=self._symbol(symbol) if symbol else None, now=self._clock())
        return self._order_dict(result.order, result.trades)

    def fetch_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Order:
        params = params or {}
        order = services.order_find(self.account_id, id if id else None, params.get("clientOrderId"),
                                     self._symbol(symbol) if symbol else None)
        return self._order_dict(order)

    def fetch_open_orders(self, symbol: str | None = None, since: int | None = None,
                          limit: int | None = None) -> list[Order]:
        qs = PaperOrder.objects.filter(account_id=self.account_id, status=services.OPEN)
        return self._orders(qs, symbol, since, limit)

    def fetch_orders(self, symbol: str | None = None, since: int | None = None,
                     limit: int | None = None) -> list[Order]:
        return self._orders(PaperOrder.objects.filter(account_id=self.account_id), symbol, since, limit)

    def _orders(self, qs, symbol, since, limit) -> list[Order]:
        if symbol:
            qs = qs.filter(symbol=self._symbol(symbol))
        if since is not None:
            qs = qs.filter(created_at__gte=timeframes.to_datetime(int(since)))
        qs = qs.select_related("symbol").prefetch_related("trades").order_by("created_at", "pk")
        orders = list(qs)
        if limit:
            orders = orders[-limit:]
        return [self._order_dict(o) for o in orders]

    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None,
                        limit: int | None = None) -> list[Trade]:
        qs = PaperTrade.objects.filter(account_id=self.account_id).select_related("symbol", "order")
        if symbol:
            qs = qs.filter(symbol=self._symbol(symbol))
        if since is not None:
            qs = qs.filter(timestamp__gte=timeframes.to_datetime(int(since)))
        trades = list(qs.order_by("timestamp", "pk"))
        if limit:
            trades = trades[-limit:]
        out = []
        for t in trades:
            d = structures.trade(t, t.symbol.symbol, t.order.type)
            d["order"] = d["info"]["orderId"] = t.order.exchange_order_id
            out.append(d)
        return out

    def fetch_balance(self) -> Balance:
        rows = PaperBalance.objects.filter(account_id=self.account_id).order_by("currency")
        return structures.balance(rows, self._now_ms())

    def fetch_positions(self, symbols: list[str] | None = None) -> list[Position]:
        """Open positions (contracts > 0) with the last close as mark price."""
        qs = PaperPosition.objects.filter(account_id=self.account_id, contracts__gt=0).select_related("symbol")
        if symbols:
            qs = qs.filter(symbol__in=[self._symbol(s) for s in symbols])
        rows = list(qs.order_by("symbol__symbol"))
        marks: dict[int, Decimal] = {}
        by_tf: dict[str, list[int]] = {}
        for p in rows:
            by_tf.setdefault(self._tf(p.symbol), []).append(p.symbol_id)
        for tf, ids in by_tf.items():
            for sid, bars in md.last_bars(ids, tf, 1).items():
                if len(bars):
                    marks[sid] = engine.to_decimal(float(bars[-1, 4]))
        now = self._now_ms()
        return [structures.position(p, marks.get(p.symbol_id, p.entry_price), self.config, now) for p in rows]

    def set_leverage(self, leverage: int, symbol: str) -> dict:
        sym = self._symbol(symbol)
        lev = services.leverage_set(account_id=self.account_id, symbol=sym, leverage=leverage, config=self.config,
                                    now=self._clock())
        return {"info": {"symbol": symbol, "leverage": lev}, "symbol": symbol, "marginMode": "isolated",
                "longLeverage": lev, "shortLeverage": lev, "leverage": lev}

