"""A fake Binance on loopback, so ccxt's real request signing and response parsing run in tests.

It speaks the subset of Binance's REST API the ccxt gateway uses for USDⓈ-M futures:

    GET    /fapi/v1/exchangeInfo, /fapi/v1/klines, /fapi/v1/ticker/24hr, /fapi/v1/depth,
           /fapi/v1/time, /fapi/v1/ping
    signed /fapi/v1/order (POST, GET, DELETE), /fapi/v1/openOrders, /fapi/v1/userTrades,
           /fapi/v1/leverage (POST), /fapi/v1/leverageBracket, /fapi/v1/symbolConfig,
           /fapi/v2|v3/balance,
           /fapi/v2|v3/account, /fapi/v2|v3/positionRisk

plus spot market data (/api/v3/exchangeInfo, klines, ticker/24hr, depth, time) for a spot
gateway, and empty answers for the side calls ccxt makes while loading markets
(/dapi/v1/exchangeInfo, a few /sapi endpoints). Any other path answers 404 and is recorded in
`unknown_paths`, so a test can tell when ccxt started calling something new.

Signed endpoints verify X-MBX-APIKEY (-2014 missing, -2015 wrong), the HMAC-SHA256 signature
over the query string and body (-1022) and the timestamp against recvWindow (-1021), as Binance
does. Orders live in memory: market orders fill at once at the close of the current 1m kline,
limit orders rest until cancelled. Positions (one-way mode, cross margin) and a USDT wallet
follow the fills, with a 0.04 % taker fee.

Klines are a deterministic function of (symbol, interval, open time) — a smooth path plus
hash noise, `open` equal to the previous bar's `close` — so any page can be recomputed in a
test with `kline()`. Binance's pagination rules apply: with startTime the first `limit` bars
with openTime >= startTime (up to endTime), with only endTime the last `limit` bars before it,
with neither the latest `limit` bars; bars exist from the symbol's listing time up to the
current (still open) bar. `add_gap()` removes a range of bars, for good or for the next N
kline answers that would contain them (a transient gap a re-fetch repairs).

Faults for the next request(s) of a path: `inject(path, kind, ...)` with kind "429"/"418"
(Retry-After header), "5xx" (status 500/502/503/504), "hang" (answer after `seconds`, longer
than the client's timeout; by default the request is still executed, as when an order reaches
the matching engine but the answer is lost) or "binance" (an error `code` such as -2010,
-1013, -2013, -1121 with Binance's message). `execute=True` with "5xx" runs the request and
then answers the error (Binance's 5xx "execution status unknown": the order may exist);
`execute=False` with "hang" never runs it (lost before the matching engine).

    with FakeBinance() as fake:
        fake.base_url  # http://127.0.0.1:PORT, to replace https://fapi.binance.com etc.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
    "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000,
    "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}
TAKER_FEE = Decimal("0.0004")
MMR = Decimal("0.004")  # maintenance margin rate of the first leverage bracket
DEFAULT_LEVERAGE = 20

# Binance's messages for the error codes tests inject.
ERROR_MESSAGES: dict[int, str] = {
    -1003: "Too many requests; current limit is 2400 request weight per 1 MINUTE.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1013: "Invalid quantity.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1120: "Invalid interval.",
    -1121: "Invalid symbol.",
    -1130: "Invalid data sent for a parameter.",
    -2010: "Account has insufficient balance for requested action.",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4014: "Price not increased by tick size.",
    -4116: "ClientOrderId is duplicated.",
}


@dataclass(frozen=True)
class MarketSpec:
    """One listed contract (and its spot twin): filters as Binance publishes them."""

    base: str
    quote: str
    price: float  # level the generated path moves around
    tick: str
    step: str
    min_qty: str
    min_notional: str
    listed_ms: int = 1_569_398_400_000  # 2019-09-25, BTCUSDT perpetual's onboard date

    @property
    def id(self) -> str:
        return self.base + self.quote


DEFAULT_MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("BTC", "USDT", 60_000.0, "0.10", "0.001", "0.001", "100"),
    MarketSpec("ETH", "USDT", 3_000.0, "0.01", "0.001", "0.001", "20"),
    MarketSpec("SOL", "USDT", 150.0, "0.0100", "1", "1", "5"),
)


@dataclass
class Fault:
    kind: str
    method: str | None
    times: int
    status: int | None = None
    retry_after: float | None = None
    code: int | None = None
    msg: str | None = None
    seconds: float = 5.0
    # Whether the request is executed despite the fault. None: the kind's default ("hang"
    # executes, "5xx" does not; "429"/"418"/"binance" never execute: the exchange refused).
    execute: bool | None = None


@dataclass
class Gap:
    symbol: str
    interval: str
    start_ms: int
    end_ms: int  # exclusive
    times: int | None  # None: permanent; N: missing from the next N kline answers that contain it


@dataclass
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() when the request arrived
    status: int | None = None


@dataclass
class _Position:
    amt: Decimal = Decimal("0")
    entry: Decimal = Decimal("0")
    leverage: int = DEFAULT_LEVERAGE
    update_ms: int = 0


@dataclass
class _State:
    wallet: Decimal
    orders: dict[int, dict] = field(default_factory=dict)
    trades: list[dict] = field(default_factory=list)
    positions: dict[str, _Position] = field(default_factory=lambda: defaultdict(_Position))
    next_order_id: int = 8_389_765_000_000_000
    next_trade_id: int = 5_000_000


def _noise(*parts) -> float:
    """Uniform [0, 1) from a hash of the parts: the same input gives the same number anywhere."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f") if x else "0"


class FakeBinance:
    def __init__(self, *, api_key: str = "fake-api-key-5d1e0c7a", api_secret: str = "fake-secret-9f3b2a61c4",
                 markets: tuple[MarketSpec, ...] = DEFAULT_MARKETS, wallet_usdt: str = "10000",
                 recv_window_check: bool = True, host: str = "127.0.0.1"):
        self.api_key = api_key
        self.api_secret = api_secret
        self.markets = {m.id: m for m in markets}
        self.recv_window_check = recv_window_check
        self.requests: list[RequestRecord] = []
        self.unknown_paths: list[str] = []
        self._faults: dict[str, list[Fault]] = defaultdict(list)
        self._gaps: list[Gap] = []
        self._lock = threading.RLock()
        self._state = _State(wallet=Decimal(wallet_usdt))
        self._release = threading.Event()  # set on stop(): hanging handlers return at once
        self._server = ThreadingHTTPServer((host, 0), _make_handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeBinance:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-binance", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- test controls -------------------------------------------------------------------

    def inject(self, path: str, kind: str, *, method: str | None = None, times: int = 1, status: int | None = None,
               retry_after: float | None = None, code: int | None = None, msg: str | None = None,
               seconds: float = 5.0, execute: bool | None = None) -> None:
        """Make the next `times` requests to `path` (and `method`, if given) fail as `kind`."""
        if kind not in ("429", "418", "5xx", "hang", "binance"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "binance" and code is None:
            raise ValueError("a 'binance' fault needs an error code")
        fault = Fault(kind=kind, method=method.upper() if method else None, times=times, status=status,
                      retry_after=retry_after, code=code, msg=msg, seconds=seconds, execute=execute)
        with self._lock:
            self._faults[path].append(fault)

    def add_gap(self, symbol: str, interval: str, start_ms: int, end_ms: int, *, times: int | None = None) -> None:
        """Bars with start_ms <= openTime < end_ms are missing (for the next `times` answers if given)."""
        with self._lock:
            self._gaps.append(Gap(symbol, interval, start_ms, end_ms, times))

    def requests_to(self, path: str, method: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def orders(self) -> list[dict]:
        with self._lock:
            return [dict(o) for o in self._state.orders.values()]

    def wallet_balance(self) -> Decimal:
        with self._lock:
            return self._state.wallet

    # --- market data ---------------------------------------------------------------------

    def _close(self, spec: MarketSpec, interval: str, n: int) -> Decimal:
        step = INTERVAL_MS[interval]
        hours = n * step / 3_600_000
        drift = 0.06 * math.sin(hours / 97.0) + 0.02 * math.sin(hours / 11.0)
        x = spec.price * math.exp(drift + 0.006 * (_noise(spec.id, interval, n, "c") - 0.5))
        tick = Decimal(spec.tick)
        return (Decimal(repr(x)) / tick).to_integral_value() * tick

    def kline(self, symbol: str, interval: str, open_ms: int) -> list:
        """The bar Binance would return for this open time (same shape as /klines rows)."""
        spec = self.markets[symbol]
        step = INTERVAL_MS[interval]
        n = open_ms // step
        o, c = self._close(spec, interval, n - 1), self._close(spec, interval, n)
        tick = Decimal(spec.tick)
        hi = max(o, c) * (1 + Decimal(repr(0.002 * _noise(spec.id, interval, n, "h"))))
        lo = min(o, c) * (1 - Decimal(repr(0.002 * _noise(spec.id, interval, n, "l"))))
        hi = (hi / tick).to_integral_value(ROUND_CEILING) * tick
        lo = (lo / tick).to_integral_value(ROUND_FLOOR) * tick
        vol = Decimal(repr(round(5 + 200 * _noise(spec.id, interval, n, "v"), 3)))
        quote_vol = (vol * c).quantize(Decimal("0.0001"))
        return [open_ms, _fmt(o), _fmt(hi), _fmt(lo), _fmt(c), _fmt(vol), open_ms + step - 1, _fmt(quote_vol),
                int(50 + 1000 * _noise(spec.id, interval, n, "t")), _fmt((vol / 2).quantize(Decimal("0.001"))),
                _fmt((quote_vol / 2).quantize(Decimal("0.0001"))), "0"]

    def last_price(self, symbol: str) -> Decimal:
        now = int(time.time() * 1000)
        return Decimal(self.kline(symbol, "1m", now - now % 60_000)[4])

    def _missing(self, symbol: str, interval: str, t: int, hit: set[int]) -> int | None:
        """End of the gap containing bar t (exclusive), or None if t is present."""
        for i, g in enumerate(self._gaps):
            if g.symbol == symbol and g.interval == interval and g.start_ms <= t < g.end_ms and g.times != 0:
                hit.add(i)
                return g.end_ms
        return None

    def _klines(self, spec: MarketSpec, interval: str, start: int | None, end: int | None, limit: int) -> list:
        step = INTERVAL_MS[interval]
        now = int(time.time() * 1000)
        first = spec.listed_ms + (-spec.listed_ms) % step
        last = now - now % step  # the current bar, still open, is included as on Binance
        if end is not None:
            last = min(last, end - end % step)
        rows: list = []
        hit: set[int] = set()
        with self._lock:
            if start is not None:
                t = max(first, start + (-start) % step)
                while t <= last and len(rows) < limit:
                    gap_end = self._missing(spec.id, interval, t, hit)
                    if gap_end is not None:
                        t = gap_end + (-gap_end) % step
                        continue
                    rows.append(self.kline(spec.id, interval, t))
                    t += step
            else:
                t = last
                while t >= first and len(rows) < limit:
                    if self._missing(spec.id, interval, t, hit) is not None:
                        t -= step
                        continue
                    rows.append(self.kline(spec.id, interval, t))
                    t -= step
                rows.reverse()
            for i in hit:
                if self._gaps[i].times:
                    self._gaps[i].times -= 1
        return rows

    def _ticker(self, spec: MarketSpec) -> dict:
        now = int(time.time() * 1000)
        bars = self._klines(spec, "1h", None, now, 24)
        o, c = Decimal(bars[0][1]), Decimal(bars[-1][4])
        hi, lo = max(Decimal(b[2]) for b in bars), min(Decimal(b[3]) for b in bars)
        vol = sum(Decimal(b[5]) for b in bars)
        qvol = sum(Decimal(b[7]) for b in bars)
        return {
            "symbol": spec.id, "priceChange": _fmt(c - o), "priceChangePercent": _fmt(((c - o) / o * 100).quantize(
                Decimal("0.001"))), "weightedAvgPrice": _fmt((qvol / vol).quantize(Decimal(spec.tick))),
            "lastPrice": _fmt(c), "lastQty": spec.min_qty, "openPrice": _fmt(o), "highPrice": _fmt(hi),
            "lowPrice": _fmt(lo), "volume": _fmt(vol), "quoteVolume": _fmt(qvol), "openTime": bars[0][0],
            "closeTime": now, "firstId": 1, "lastId": 1000, "count": 1000,
        }

    def _depth(self, spec: MarketSpec, limit: int) -> dict:
        tick = Decimal(spec.tick)
        mid = self.last_price(spec.id)
        levels = min(limit, 100)
        qty = Decimal(spec.step) * 10
        bids = [[_fmt(mid - tick * (i + 1)), _fmt(qty * (i + 1))] for i in range(levels)]
        asks = [[_fmt(mid + tick * (i + 1)), _fmt(qty * (i + 1))] for i in range(levels)]
        now = int(time.time() * 1000)
        return {"lastUpdateId": now, "E": now, "T": now, "bids": bids, "asks": asks}

    def _futures_symbol(self, spec: MarketSpec) -> dict:
        return {
            "symbol": spec.id, "pair": spec.id, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
            "onboardDate": spec.listed_ms, "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": spec.base, "quoteAsset": spec.quote,
            "marginAsset": spec.quote, "pricePrecision": max(0, -Decimal(spec.tick).normalize().as_tuple().exponent),
            "quantityPrecision": max(0, -Decimal(spec.step).normalize().as_tuple().exponent),
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": ["Layer-1"],
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": spec.tick, "maxPrice": "4529764", "tickSize": spec.tick},
                {"filterType": "LOT_SIZE", "minQty": spec.min_qty, "maxQty": "1000", "stepSize": spec.step},
                {"filterType": "MARKET_LOT_SIZE", "minQty": spec.min_qty, "maxQty": "120", "stepSize": spec.step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": spec.min_notional},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def _spot_symbol(self, spec: MarketSpec) -> dict:
        return {
            "symbol": spec.id, "status": "TRADING", "baseAsset": spec.base, "baseAssetPrecision": 8,
            "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                                                          "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
            "cancelReplaceAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": spec.tick, "maxPrice": "1000000.00", "tickSize": spec.tick},
                {"filterType": "LOT_SIZE", "minQty": spec.min_qty, "maxQty": "9000.00", "stepSize": spec.step},
                {"filterType": "NOTIONAL", "minNotional": spec.min_notional, "applyMinToMarket": True,
                 "maxNotional": "9000000.00", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    # --- account -------------------------------------------------------------------------

    def _unrealized(self, sym: str, pos: _Position) -> Decimal:
        if not pos.amt:
            return Decimal("0")
        return (self.last_price(sym) - pos.entry) * pos.amt

    def _initial_margin(self) -> Decimal:
        total = Decimal("0")
        for sym, pos in self._state.positions.items():
            if pos.amt:
                total += abs(pos.amt) * self.last_price(sym) / pos.leverage
        for o in self._state.orders.values():
            if o["status"] == "NEW":
                lev = self._state.positions[o["symbol"]].leverage
                total += Decimal(o["origQty"]) * Decimal(o["price"]) / lev
        return total

    def _available(self) -> Decimal:
        upnl = sum((self._unrealized(s, p) for s, p in self._state.positions.items()), Decimal("0"))
        return self._state.wallet + upnl - self._initial_margin()

    def _assets(self) -> list[dict]:
        upnl = sum((self._unrealized(s, p) for s, p in self._state.positions.items()), Decimal("0"))
        im = self._initial_margin()
        w = self._state.wallet
        now = int(time.time() * 1000)
        return [{
            "asset": "USDT", "walletBalance": _fmt(w), "unrealizedProfit": _fmt(upnl), "marginBalance": _fmt(w + upnl),
            "maintMargin": _fmt(im / 10), "initialMargin": _fmt(im), "positionInitialMargin": _fmt(im),
            "openOrderInitialMargin": "0", "crossWalletBalance": _fmt(w), "crossUnPnl": _fmt(upnl),
            "availableBalance": _fmt(w + upnl - im), "maxWithdrawAmount": _fmt(w + upnl - im),
            "marginAvailable": True, "updateTime": now,
        }]

    def _position_rows(self, symbol: str | None, only_open: bool) -> list[dict]:
        rows = []
        for sym in self.markets:
            if symbol and sym != symbol:
                continue
            pos = self._state.positions[sym]
            if only_open and not pos.amt:
                continue
            mark = self.last_price(sym)
            notional = pos.amt * mark
            im = abs(notional) / pos.leverage
            liq = Decimal("0")
            if pos.amt:  # Binance's one-way cross formula with this wallet alone backing the position
                side, qty = (1 if pos.amt > 0 else -1), abs(pos.amt)
                liq = max(Decimal("0"), (self._state.wallet - side * qty * pos.entry) / (qty * MMR - side * qty))
                liq = liq.quantize(Decimal(self.markets[sym].tick))
            rows.append({
                "symbol": sym, "positionSide": "BOTH", "positionAmt": _fmt(pos.amt), "entryPrice": _fmt(pos.entry),
                "breakEvenPrice": _fmt(pos.entry), "markPrice": _fmt(mark), "unRealizedProfit": _fmt(
                    self._unrealized(sym, pos)), "liquidationPrice": _fmt(liq), "isolatedMargin": "0",
                "notional": _fmt(notional), "marginAsset": "USDT", "isolatedWallet": "0", "initialMargin": _fmt(im),
                "maintMargin": _fmt(abs(notional) * MMR), "positionInitialMargin": _fmt(im),
                "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
                "updateTime": pos.update_ms, "leverage": str(pos.leverage), "marginType": "cross",
                "maxNotionalValue": "1000000", "isAutoAddMargin": "false",
            })
        return rows

    def _order_view(self, o: dict) -> dict:
        return {k: v for k, v in o.items() if not k.startswith("_")}

    def _find_order(self, p: dict) -> dict | None:
        sym = p.get("symbol")
        if "orderId" in p:
            o = self._state.orders.get(int(p["orderId"]))
            return o if o and o["symbol"] == sym else None
        cid = p.get("origClientOrderId")
        found = [o for o in self._state.orders.values() if o["symbol"] == sym and o["clientOrderId"] == cid]
        return found[-1] if found else None

    def _new_order(self, p: dict) -> tuple[int, dict]:
        spec = self.markets.get(p.get("symbol", ""))
        if spec is None:
            return _error(-1121)
        side, otype = p.get("side"), p.get("type")
        if side not in ("BUY", "SELL") or otype not in ("MARKET", "LIMIT") or "quantity" not in p:
            return _error(-1102)
        qty = Decimal(p["quantity"])
        step = Decimal(spec.step)
        if qty <= 0:
            return _error(-4003)
        if qty % step or qty < Decimal(spec.min_qty):
            return _error(-1111)
        price = None
        if otype == "LIMIT":
            if "price" not in p:
                return _error(-1102)
            price = Decimal(p["price"])
            if price <= 0 or price % Decimal(spec.tick):
                return _error(-4014)
        ref = price if price is not None else self.last_price(spec.id)
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        notional = qty * ref
        if notional < Decimal(spec.min_notional) and not reduce_only:
            return 400, {"code": -4164, "msg": f"Order's notional must be no smaller than {spec.min_notional} "
                                              "(unless you choose reduce only)."}
        cid = p.get("newClientOrderId") or f"fake-{self._state.next_order_id}"
        if any(o["clientOrderId"] == cid and o["status"] == "NEW" for o in self._state.orders.values()):
            return _error(-4116)
        pos = self._state.positions[spec.id]
        signed = qty if side == "BUY" else -qty
        if reduce_only and (not pos.amt or (pos.amt > 0) == (signed > 0) or abs(signed) > abs(pos.amt)):
            return _error(-2022)
        if not reduce_only and notional / pos.leverage > self._available():
            return _error(-2019)
        now = int(time.time() * 1000)
        self._state.next_order_id += 1
        order = {
            "orderId": self._state.next_order_id, "symbol": spec.id, "status": "NEW", "clientOrderId": cid,
            "price": _fmt(price) if price is not None else "0", "avgPrice": "0", "origQty": _fmt(qty),
            "executedQty": "0", "cumQty": "0", "cumQuote": "0", "timeInForce": p.get("timeInForce", "GTC"),
            "type": otype, "reduceOnly": reduce_only, "closePosition": False, "side": side, "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": otype,
            "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": now,
            "updateTime": now,
        }
        if otype == "MARKET":
            self._fill(order, spec, qty, ref, now)
        self._state.orders[order["orderId"]] = order
        return 200, self._order_view(order)

    def _fill(self, order: dict, spec: MarketSpec, qty: Decimal, price: Decimal, now: int) -> None:
        pos = self._state.positions[spec.id]
        signed = qty if order["side"] == "BUY" else -qty
        realized = Decimal("0")
        if pos.amt and (pos.amt > 0) != (signed > 0):  # reducing (maybe flipping)
            closed = min(abs(pos.amt), qty)
            realized = (price - pos.entry) * closed * (1 if pos.amt > 0 else -1)
            new_amt = pos.amt + signed
            if new_amt and (new_amt > 0) != (pos.amt > 0):
                pos.entry = price
            elif not new_amt:
                pos.entry = Decimal("0")
            pos.amt = new_amt
        else:
            total = abs(pos.amt) + qty
            pos.entry = (pos.entry * abs(pos.amt) + price * qty) / total
            pos.amt += signed
        pos.update_ms = now
        fee = (qty * price * TAKER_FEE).quantize(Decimal("0.00000001"))
        self._state.wallet += realized - fee
        order.update(status="FILLED", avgPrice=_fmt(price), executedQty=_fmt(qty), cumQty=_fmt(qty),
                     cumQuote=_fmt(qty * price), updateTime=now)
        self._state.next_trade_id += 1
        self._state.trades.append({
            "buyer": order["side"] == "BUY", "commission": _fmt(fee), "commissionAsset": "USDT",
            "id": self._state.next_trade_id, "maker": False, "orderId": order["orderId"], "price": _fmt(price),
            "qty": _fmt(qty), "quoteQty": _fmt(qty * price), "realizedPnl": _fmt(realized), "side": order["side"],
            "positionSide": "BOTH", "symbol": spec.id, "time": now,
        })

    # --- routing -------------------------------------------------------------------------

    def _check_signed(self, headers: dict[str, str], query: str, body: str, p: dict) -> tuple[int, dict] | None:
        key = headers.get("x-mbx-apikey")
        if not key:
            return _error(-2014, status=401)
        if not hmac.compare_digest(key, self.api_key):
            return _error(-2015, status=401)
        total = query + ("&" if query and body else "") + body
        payload, sep, signature = total.rpartition("&signature=")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(signature, expected):
            return _error(-1022)
        if self.recv_window_check:
            try:
                ts = int(p["timestamp"])
            except (KeyError, ValueError):
                return _error(-1102)
            window = int(p.get("recvWindow", 5000))
            now = int(time.time() * 1000)
            if ts > now + 1000 or now - ts > window:
                return _error(-1021)
        return None

    def handle(self, method: str, path: str, query: str, body: str, headers: dict[str, str]) -> tuple[int, object]:
        p = dict(parse_qsl(query, keep_blank_values=True))
        p.update(parse_qsl(body, keep_blank_values=True))
        p.pop("signature", None)
        route = _ROUTES.get((method, path))
        if route is None:
            with self._lock:
                self.unknown_paths.append(f"{method} {path}")
            return 404, "<html><body><h1>404 Not Found</h1></body></html>"
        fn, signed = route
        if signed:
            err = self._check_signed(headers, query, body, p)
            if err:
                return err
        with self._lock:
            return fn(self, p)


def _error(code: int, status: int = 400) -> tuple[int, dict]:
    return status, {"code": code, "msg": ERROR_MESSAGES.get(code, "error")}


def _symbol_or_error(fake: FakeBinance, p: dict) -> MarketSpec | tuple[int, dict]:
    spec = fake.markets.get(p.get("symbol", ""))
    return spec if spec is not None else _error(-1121)


def _r_klines(max_limit: int):
    def route(fake: FakeBinance, p: dict):
        spec = _symbol_or_error(fake, p)
        if isinstance(spec, tuple):
            return spec
        interval = p.get("interval")
        if interval not in INTERVAL_MS:
            return _error(-1120)
        try:
            limit = int(p.get("limit", 500))
            start = int(p["startTime"]) if "startTime" in p else None
            end = int(p["endTime"]) if "endTime" in p else None
        except ValueError:
            return _error(-1130)
        if not 1 <= limit <= max_limit:
            return _error(-1130)
        return 200, fake._klines(spec, interval, start, end, limit)
    return route


def _r_exchange_info_futures(fake: FakeBinance, p: dict):
    return 200, {
        "timezone": "UTC", "serverTime": int(time.time() * 1000), "futuresType": "U_MARGINED",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                       {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [fake._futures_symbol(s) for s in fake.markets.values()],
    }


def _r_exchange_info_spot(fake: FakeBinance, p: dict):
    return 200, {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "exchangeFilters": [],
                 "symbols": [fake._spot_symbol(s) for s in fake.markets.values()]}


def _r_time(fake: FakeBinance, p: dict):
    return 200, {"serverTime": int(time.time() * 1000)}


def _r_ticker(fake: FakeBinance, p: dict):
    if "symbol" not in p:
        return 200, [fake._ticker(s) for s in fake.markets.values()]
    spec = _symbol_or_error(fake, p)
    return spec if isinstance(spec, tuple) else (200, fake._ticker(spec))


def _r_depth(fake: FakeBinance, p: dict):
    spec = _symbol_or_error(fake, p)
    return spec if isinstance(spec, tuple) else (200, fake._depth(spec, int(p.get("limit", 500))))


def _r_order_post(fake: FakeBinance, p: dict):
    return fake._new_order(p)


def _r_order_get(fake: FakeBinance, p: dict):
    if "symbol" in p and p["symbol"] not in fake.markets:
        return _error(-1121)
    o = fake._find_order(p)
    return (200, fake._order_view(o)) if o else _error(-2013)


def _r_order_delete(fake: FakeBinance, p: dict):
    if "symbol" in p and p["symbol"] not in fake.markets:
        return _error(-1121)
    o = fake._find_order(p)
    if o is None or o["status"] != "NEW":
        return _error(-2011)
    o.update(status="CANCELED", updateTime=int(time.time() * 1000))
    return 200, fake._order_view(o)


def _r_open_orders(fake: FakeBinance, p: dict):
    if "symbol" in p and p["symbol"] not in fake.markets:
        return _error(-1121)
    return 200, [fake._order_view(o) for o in fake._state.orders.values()
                 if o["status"] == "NEW" and p.get("symbol") in (None, o["symbol"])]


def _r_user_trades(fake: FakeBinance, p: dict):
    spec = _symbol_or_error(fake, p)
    if isinstance(spec, tuple):
        return spec
    trades = [t for t in fake._state.trades if t["symbol"] == spec.id
              and int(p.get("startTime", 0)) <= t["time"]]
    return 200, trades[: int(p.get("limit", 500))]


def _r_leverage(fake: FakeBinance, p: dict):
    spec = _symbol_or_error(fake, p)
    if isinstance(spec, tuple):
        return spec
    lev = int(p.get("leverage", 0))
    if not 1 <= lev <= 125:
        return 400, {"code": -4028, "msg": f"Leverage {lev} is not valid"}
    fake._state.positions[spec.id].leverage = lev
    return 200, {"leverage": lev, "maxNotionalValue": "1000000", "symbol": spec.id}


def _r_leverage_bracket(fake: FakeBinance, p: dict):
    return 200, [{"symbol": s, "notionalCoef": 1.0, "brackets": [
        {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio": 0.004,
         "cum": 0.0},
        {"bracket": 2, "initialLeverage": 100, "notionalCap": 600000, "notionalFloor": 50000,
         "maintMarginRatio": 0.005, "cum": 50.0}]} for s in fake.markets]


def _r_balance(fake: FakeBinance, p: dict):
    rows = fake._assets()
    for r in rows:
        r["balance"] = r["walletBalance"]
        r["accountAlias"] = "SgsR"
    return 200, rows


def _r_account(fake: FakeBinance, p: dict):
    assets = fake._assets()
    a = assets[0]
    return 200, {
        "totalInitialMargin": a["initialMargin"], "totalMaintMargin": a["maintMargin"],
        "totalWalletBalance": a["walletBalance"], "totalUnrealizedProfit": a["unrealizedProfit"],
        "totalMarginBalance": a["marginBalance"], "totalPositionInitialMargin": a["positionInitialMargin"],
        "totalOpenOrderInitialMargin": "0", "totalCrossWalletBalance": a["crossWalletBalance"],
        "totalCrossUnPnl": a["crossUnPnl"], "availableBalance": a["availableBalance"],
        "maxWithdrawAmount": a["maxWithdrawAmount"], "assets": assets,
        "positions": fake._position_rows(None, only_open=True),
    }


def _r_position_risk_v2(fake: FakeBinance, p: dict):
    return 200, fake._position_rows(p.get("symbol"), only_open=False)


def _r_position_risk_v3(fake: FakeBinance, p: dict):
    # v3 lists only symbols with a position (or open orders) and drops leverage/marginType.
    rows = fake._position_rows(p.get("symbol"), only_open=True)
    for r in rows:
        for k in ("leverage", "marginType", "maxNotionalValue", "isAutoAddMargin"):
            r.pop(k)
    return 200, rows


def _r_symbol_config(fake: FakeBinance, p: dict):
    if "symbol" in p and p["symbol"] not in fake.markets:
        return _error(-1121)
    return 200, [{"symbol": s, "marginType": "CROSSED", "isAutoAddMargin": "false",
                  "leverage": fake._state.positions[s].leverage, "maxNotionalValue": "1000000"}
                 for s in fake.markets if p.get("symbol") in (None, s)]


def _r_empty_list(fake: FakeBinance, p: dict):
    return 200, []


def _r_empty_symbols(fake: FakeBinance, p: dict):
    return 200, {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": []}


def _r_ping(fake: FakeBinance, p: dict):
    return 200, {}


_ROUTES: dict[tuple[str, str], tuple] = {
    ("GET", "/fapi/v1/ping"): (_r_ping, False),
    ("GET", "/fapi/v1/time"): (_r_time, False),
    ("GET", "/fapi/v1/exchangeInfo"): (_r_exchange_info_futures, False),
    ("GET", "/fapi/v1/klines"): (_r_klines(1500), False),
    ("GET", "/fapi/v1/ticker/24hr"): (_r_ticker, False),
    ("GET", "/fapi/v1/depth"): (_r_depth, False),
    ("POST", "/fapi/v1/order"): (_r_order_post, True),
    ("GET", "/fapi/v1/order"): (_r_order_get, True),
    ("DELETE", "/fapi/v1/order"): (_r_order_delete, True),
    ("GET", "/fapi/v1/openOrders"): (_r_open_orders, True),
    ("GET", "/fapi/v1/userTrades"): (_r_user_trades, True),
    ("POST", "/fapi/v1/leverage"): (_r_leverage, True),
    ("GET", "/fapi/v1/leverageBracket"): (_r_leverage_bracket, True),
    ("GET", "/fapi/v1/symbolConfig"): (_r_symbol_config, True),
    ("GET", "/fapi/v2/balance"): (_r_balance, True),
    ("GET", "/fapi/v3/balance"): (_r_balance, True),
    ("GET", "/fapi/v2/account"): (_r_account, True),
    ("GET", "/fapi/v3/account"): (_r_account, True),
    ("GET", "/fapi/v2/positionRisk"): (_r_position_risk_v2, True),
    ("GET", "/fapi/v3/positionRisk"): (_r_position_risk_v3, True),
    # spot market data
    ("GET", "/api/v3/ping"): (_r_ping, False),
    ("GET", "/api/v3/time"): (_r_time, False),
    ("GET", "/api/v3/exchangeInfo"): (_r_exchange_info_spot, False),
    ("GET", "/api/v3/klines"): (_r_klines(1000), False),
    ("GET", "/api/v3/ticker/24hr"): (_r_ticker, False),
    ("GET", "/api/v3/depth"): (_r_depth, False),
    # side calls of load_markets (COIN-M markets, currencies and margin pairs with a key)
    ("GET", "/dapi/v1/exchangeInfo"): (_r_empty_symbols, False),
    ("GET", "/sapi/v1/capital/config/getall"): (_r_empty_list, True),
    ("GET", "/sapi/v1/margin/allPairs"): (_r_empty_list, True),
    ("GET", "/sapi/v1/margin/isolated/allPairs"): (_r_empty_list, True),
}


def _make_handler(fake: FakeBinance):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeBinance/1.0"

        def log_message(self, format, *args):  # noqa: A002 - quiet: tests read fake.requests instead
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            params.update(parse_qsl(body, keep_blank_values=True))
            record = RequestRecord(self.command, parts.path, params, headers, time.monotonic())
            with fake._lock:
                fake.requests.append(record)
                fault = None
                for f in fake._faults.get(parts.path, []):
                    if f.times > 0 and (f.method is None or f.method == self.command):
                        f.times -= 1
                        fault = f
                        break
            extra: dict[str, str] = {}
            if fault is None or fault.kind == "hang":
                if fault is not None and fault.execute is False:
                    fake._release.wait(fault.seconds)
                    self.close_connection = True
                    return
                status, payload = fake.handle(self.command, parts.path, parts.query, body, headers)
                if fault is not None:
                    fake._release.wait(fault.seconds)
            elif fault.kind in ("429", "418"):
                status = int(fault.kind)
                payload = {"code": -1003, "msg": fault.msg or ERROR_MESSAGES[-1003]}
                if fault.retry_after is not None:
                    extra["Retry-After"] = _retry_after_text(fault.retry_after)
            elif fault.kind == "5xx":
                if fault.execute:  # executed, then the gateway answers 5xx: the caller cannot tell
                    fake.handle(self.command, parts.path, parts.query, body, headers)
                status = fault.status or 503
                payload = "<html><body><h1>Service Unavailable</h1></body></html>"
            else:  # binance error code
                status = fault.status or 400
                payload = {"code": fault.code, "msg": fault.msg or ERROR_MESSAGES.get(fault.code, "error")}
            record.status = status
            self._reply(status, payload, extra)

        def _reply(self, status: int, payload: object, extra: dict[str, str]) -> None:
            is_text = isinstance(payload, str)
            data = (payload if is_text else json.dumps(payload)).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if is_text else "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout): the answer is lost

        do_GET = do_POST = do_DELETE = do_PUT = _serve  # noqa: N815

    return Handler


def _retry_after_text(seconds: float) -> str:
    # Binance sends whole seconds; fractions are allowed here so tests stay fast.
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
