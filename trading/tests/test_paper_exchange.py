"""The paper exchange: the pure fill model (tables and properties), then the gateway on
PostgreSQL — ccxt's own structure validators, persistence, rejections that change nothing,
resting limit orders, partial fills, latency, liquidation, funding, and account locking."""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import ccxt
import numpy as np
import pytest
from ccxt.test.exchange.base.test_balance import test_balance as validate_balance
from ccxt.test.exchange.base.test_market import test_market as validate_market
from ccxt.test.exchange.base.test_ohlcv import test_ohlcv as validate_ohlcv
from ccxt.test.exchange.base.test_order import test_order as validate_order
from ccxt.test.exchange.base.test_order_book import test_order_book as validate_order_book
from ccxt.test.exchange.base.test_position import test_position as validate_position
from ccxt.test.exchange.base.test_ticker import test_ticker as validate_ticker
from ccxt.test.exchange.base.test_trade import test_trade as validate_trade
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.exchanges.errors import (
    AuthenticationError,
    BadSymbol,
    DuplicateClientOrderId,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
)
from trading.exchanges.paper import engine
from trading.exchanges.paper.engine import (
    LONG,
    MAKER,
    SHORT,
    TAKER,
    Bar,
    FillConfig,
    MarketConditions,
    MarketSpec,
    OrderRequest,
    PositionState,
    Wallet,
)

D = Decimal
CFG = FillConfig()
SPOT = MarketSpec("BTC/USDT", "BTC", "USDT", tick_size=D("0.01"), lot_size=D("0.0001"), min_notional=D("5"))
PERP = MarketSpec("BTC/USDT:USDT", "BTC", "USDT", settle="USDT", is_perpetual=True, tick_size=D("0.1"),
                  lot_size=D("0.001"), min_notional=D("5"))
COND = MarketConditions(last_price=D("30000"), volatility=D("0.002"), avg_bar_volume=D("40"),
                        market_time_ms=1_767_225_600_000)


def bar(t: int = 0, o="30000", h="30100", lo="29900", c="30050", v="40") -> Bar:
    return Bar(t, D(o), D(h), D(lo), D(c), D(v))


# === the pure engine ========================================================================


@pytest.mark.parametrize(("notional", "liquidity", "fee"), [
    ("10000", MAKER, "2"),  # 0.02 %
    ("10000", TAKER, "5"),  # 0.05 %
    ("0.01", TAKER, "0.000005"),
    ("123.456789", MAKER, "0.0246913578"),
    ("0", TAKER, "0"),
])
def test_fees_are_notional_times_rate(notional, liquidity, fee):
    assert engine.fee_for(D(notional), liquidity, CFG) == D(fee)


def test_fees_round_up_and_negative_rates_are_refused():
    assert engine.fee_for(D("0.000000001"), TAKER, CFG) == D("1e-12")  # 5e-13 -> up to the 12th decimal
    with pytest.raises(ValueError, match="maker_fee_rate"):
        FillConfig(maker_fee_rate=D("-0.0001"))


@pytest.mark.parametrize(("amount", "sigma", "volume", "expected"), [
    # half spread 0.00005 + 0.05 * sigma, impact sigma * sqrt(Q/V)
    ("0", "0.002", "40", "0.00015"),
    ("10", "0.002", "40", "0.00115"),  # 0.00015 + 0.002 * 0.5
    ("40", "0.002", "40", "0.00215"),  # 0.00015 + 0.002 * 1
    ("1", "0", "40", "0.00005"),  # no volatility: just the minimum half spread
    ("100", "0.5", "1", "0.03"),  # capped at max_slippage
    ("1", "0.002", "0", "0.03"),  # no volume at all: the cap
])
def test_slippage_formula(amount, sigma, volume, expected):
    assert engine.slippage_fraction(D(amount), D(sigma), D(volume), CFG) == D(expected)


@given(st.decimals(min_value=D("0.0001"), max_value=D("1000"), places=4),
       st.decimals(min_value=D("0.0001"), max_value=D("1000"), places=4),
       st.decimals(min_value=D("0"), max_value=D("0.05"), places=5))
def test_slippage_grows_with_size(a, b, sigma):
    small, large = sorted((a, b))
    assert engine.slippage_fraction(small, sigma, D("40"), CFG) <= engine.slippage_fraction(large, sigma, D("40"), CFG)


@given(st.decimals(min_value=D("0"), max_value=D("0.05"), places=5),
       st.decimals(min_value=D("0"), max_value=D("0.05"), places=5),
       st.decimals(min_value=D("0.0001"), max_value=D("100"), places=4))
def test_slippage_grows_with_volatility(a, b, amount):
    calm, wild = sorted((a, b))
    assert engine.slippage_fraction(amount, calm, D("40"), CFG) <= engine.slippage_fraction(amount, wild, D("40"), CFG)


def test_taker_prices_move_against_the_taker_and_sit_on_ticks():
    buy = engine.taker_price("buy", D("30000"), D("10"), D("0.002"), D("40"), SPOT, CFG)
    sell = engine.taker_price("sell", D("30000"), D("10"), D("0.002"), D("40"), SPOT, CFG)
    assert buy == D("30034.50") and sell == D("29965.50")  # 30000 * (1 +/- 0.00115)
    bigger = engine.taker_price("buy", D("30000"), D("40"), D("0.002"), D("40"), SPOT, CFG)
    assert bigger > buy
    assert engine.is_multiple(buy, SPOT.tick_size) and engine.is_multiple(sell, SPOT.tick_size)


@pytest.mark.parametrize(("amount", "volume", "filled", "cancel_rest"), [
    ("1", "40", "1", True),  # cap 4 BTC: fills whole
    ("4", "40", "4", True),
    ("10", "40", "4", True),  # 10 % of 40: 4 filled, 6 cancelled
    ("10", "0.0005", "0", True),  # cap below one lot: nothing
])
def test_market_orders_fill_up_to_the_participation_cap_and_cancel_the_rest(amount, volume, filled, cancel_rest):
    cond = MarketConditions(D("30000"), D("0.002"), D(volume), 0)
    m = engine.match_immediately(OrderRequest("buy", "market", D(amount)), cond, SPOT, CFG)
    assert (m.amount, m.cancel_rest, m.liquidity) == (D(filled), cancel_rest, TAKER)


@pytest.mark.parametrize(("side", "limit", "low", "high", "crosses"), [
    ("buy", "29900", "29900", "30100", True),  # touching is enough
    ("buy", "29900", "29899.9", "30100", True),
    ("buy", "29900", "29900.1", "30100", False),
    ("sell", "30100", "29900", "30100", True),
    ("sell", "30100", "29900", "30099.9", False),
])
def test_limit_orders_fill_only_when_the_bar_crosses(side, limit, low, high, crosses):
    b = bar(lo=low, h=high, o="30000", c="30000")
    assert engine.limit_crosses(side, D(limit), b) is crosses
    order = engine.RestingOrder(side, "limit", D("1"), D(limit), arrival_ms=0, arrived=True)
    m = engine.match_on_bar(order, b, M5, COND, SPOT, CFG)
    assert m.amount == (D("1") if crosses else 0)
    if crosses:
        assert (m.price, m.liquidity) == (D(limit), MAKER)


def test_orders_ignore_bars_before_arrival_and_bars_already_matched():
    order = engine.RestingOrder("buy", "limit", D("1"), D("29950"), arrival_ms=600_000, arrived=True)
    assert engine.match_on_bar(order, bar(t=300_000), M5, COND, SPOT, CFG) is None  # ended as the order arrived
    assert engine.match_on_bar(order, bar(t=600_000), M5, COND, SPOT, CFG).amount == 1
    delayed = engine.RestingOrder("buy", "market", D("1"), None, arrival_ms=600_250, arrived=False)
    assert engine.match_on_bar(delayed, bar(t=300_000), M5, COND, SPOT, CFG) is None
    assert engine.match_on_bar(delayed, bar(t=600_000), M5, COND, SPOT, CFG).amount == 1  # holds the arrival
    seen = engine.RestingOrder("buy", "limit", D("1"), D("29950"), arrival_ms=0, arrived=True, last_bar_ms=600_000)
    assert engine.match_on_bar(seen, bar(t=600_000), M5, COND, SPOT, CFG) is None  # re-delivered bar


def test_large_limit_orders_fill_partially_bar_after_bar():
    order = engine.RestingOrder("buy", "limit", D("10"), D("29950"), arrival_ms=0, arrived=True)
    m = engine.match_on_bar(order, bar(v="40"), M5, COND, SPOT, CFG)
    assert (m.amount, m.cancel_rest) == (D("4"), False)  # 10 % of the bar's 40; the rest stays open


def test_latency_delayed_orders_take_the_open_of_their_first_bar():
    market = engine.RestingOrder("buy", "market", D("1"), None, arrival_ms=300_000, arrived=False)
    m = engine.match_on_bar(market, bar(t=300_000, o="31000", h="31200", lo="30900", c="31100"), M5, COND, SPOT, CFG)
    assert m.liquidity == TAKER and m.cancel_rest
    assert D("31000") < m.price <= D("31000") * (1 + CFG.max_slippage)
    # a buy limit above the open is marketable on arrival: taker at about the open, not at the limit
    limit = engine.RestingOrder("buy", "limit", D("1"), D("31500"), arrival_ms=300_000, arrived=False)
    m = engine.match_on_bar(limit, bar(t=300_000, o="31000", h="31200", lo="30900", c="31100"), M5, COND, SPOT, CFG)
    assert m.liquidity == TAKER and m.price < D("31500")


@pytest.mark.parametrize(("side", "contracts", "entry", "leverage", "expected"), [
    # long: (Q*E - M - cum) / (Q * (1 - rate)); tier 1: rate 0.4 %, cum 0
    (LONG, "1", "30000", 10, "27108.433734939759"),  # (30000 - 3000) / 0.996
    (SHORT, "1", "30000", 10, "32868.525896414343"),  # (30000 + 3000) / 1.004
    (LONG, "2", "50000", 20, "47713.567839195980"),  # notional 100k: tier 2 (0.5 %, cum 50): 94950 / 1.99
    (SHORT, "2", "50000", 20, "52263.681592039801"),  # (100000 + 5000 + 50) / 2.01
])
def test_liquidation_price_formula(side, contracts, entry, leverage, expected):
    q, e = D(contracts), D(entry)
    margin = q * e / leverage
    lp = engine.liquidation_price(side, q, e, margin)
    assert lp == D(expected)
    # at the liquidation price, what is left of the margin is exactly the maintenance margin there
    sign = 1 if side == LONG else -1
    left = margin + (lp - e) * q * sign
    assert abs(left - engine.maintenance_margin(q, lp)) < D("0.0001") + q * e * D("0.0001")


def test_an_unlevered_long_cannot_be_liquidated_but_a_short_can():
    assert engine.liquidation_price(LONG, D("1"), D("30000"), D("30000")) is None
    assert engine.liquidation_price(SHORT, D("1"), D("30000"), D("30000")) > D("59000")


@pytest.mark.parametrize(("side", "rate", "received"), [
    (LONG, "0.0001", "-3"),  # longs pay shorts when the rate is positive
    (SHORT, "0.0001", "3"),
    (LONG, "-0.0002", "6"),  # and receive when it is negative
    (SHORT, "-0.0002", "-6"),
])
def test_funding_sign(side, rate, received):
    assert engine.funding_payment(side, D("1"), D("30000"), D(rate)) == D(received)


def test_funding_times_are_every_eight_hours_utc():
    day = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    h = 3_600_000
    assert engine.funding_times(day + 8 * h - 300_000, day + 8 * h) == [day + 8 * h]
    assert engine.funding_times(day + 8 * h, day + 8 * h + 300_000) == []  # the boundary belongs to one bar only
    assert engine.funding_times(day, day + 24 * h) == [day + 8 * h, day + 16 * h, day + 24 * h]


@pytest.mark.parametrize(("kwargs", "error", "reason"), [
    ({"amount": "0.00015"}, InvalidOrder, "not a multiple of the lot size 0.0001"),
    ({"amount": "0"}, InvalidOrder, "must be > 0"),
    ({"type": "limit", "price": "30000.005"}, InvalidOrder, "not a multiple of the tick size 0.01"),
    ({"type": "limit", "price": None}, InvalidOrder, "needs a price"),
    ({"type": "stop"}, InvalidOrder, "not supported"),
    ({"side": "long"}, InvalidOrder, "not buy or sell"),
    ({"amount": "nan"}, InvalidOrder, "not a finite number"),
    ({"reduce_only": True}, InvalidOrder, "reduceOnly applies to perpetuals"),
])
def test_order_shape_rejections(kwargs, error, reason):
    args = {"type": "market", "side": "buy", "amount": "0.001", "price": None, "reduce_only": False} | kwargs
    with pytest.raises(error, match=reason):
        engine.parse_order_request(SPOT, args["type"], args["side"], args["amount"], args["price"],
                                   args["reduce_only"])


def test_min_notional_and_reduce_only_rules():
    with pytest.raises(InvalidOrder, match="below the minimum 5"):
        engine.check_min_notional(SPOT, OrderRequest("buy", "market", D("0.0001")), D("30000"))  # 3 USDT
    engine.check_min_notional(SPOT, OrderRequest("buy", "market", D("0.0002")), D("30000"))  # 6 USDT
    long = PositionState(LONG, D("1"), D("30000"), 10, D("3000"))
    engine.check_reduce_only(PERP, OrderRequest("sell", "market", D("1"), reduce_only=True), long)
    with pytest.raises(InvalidOrder, match="would increase"):
        engine.check_reduce_only(PERP, OrderRequest("buy", "market", D("1"), reduce_only=True), long)
    with pytest.raises(InvalidOrder, match="exceeds"):
        engine.check_reduce_only(PERP, OrderRequest("sell", "market", D("0.6"), reduce_only=True), long, D("0.5"))


def test_perp_round_trip_accounting():
    w = Wallet(free=D("10000"))
    pos = engine.flat_position(10)
    opened = engine.apply_perp_fill(PERP, "buy", D("1"), D("30000"), TAKER, wallet=w, position=pos, config=CFG)
    assert opened.wallet == Wallet(free=D("10000") - D("3000") - D("15"), used=D("3000"))
    assert opened.position.contracts == 1 and opened.position.isolated_margin == D("3000")
    closed = engine.apply_perp_fill(PERP, "sell", D("1"), D("31000"), TAKER, wallet=opened.wallet,
                                    position=opened.position, config=CFG)
    assert closed.realized_pnl == D("1000") and closed.fee == D("15.5")
    assert closed.wallet == Wallet(free=D("10000") - 15 + 1000 - D("15.5"), used=D("0"))
    assert not closed.position.is_open


def test_liquidation_loses_exactly_the_isolated_margin():
    pos = PositionState(LONG, D("1"), D("30000"), 10, D("3000"))
    w = Wallet(free=D("7000"), used=D("3000"))
    lp = engine.liquidation_price(LONG, pos.contracts, pos.entry_price, pos.isolated_margin)
    assert engine.liquidation_hit(pos, bar(lo=str(lp + 1), h="30000", o="29000", c="29000"), CFG) is None
    assert engine.liquidation_hit(pos, bar(lo=str(lp), h="30000", o="29000", c="29000"), CFG) == lp
    liq = engine.liquidate(pos, lp, w)
    assert liq.wallet == Wallet(free=D("7000"), used=D("0"))  # the free balance is untouched (isolated)
    assert liq.realized_pnl == lp - D("30000") < 0
    assert -liq.realized_pnl + liq.fee == D("3000")  # loss down to LP + clearance fee = the whole margin
    assert abs(liq.fee - engine.maintenance_margin(D("1"), lp)) < D("0.000001")  # what is left is the MM at LP
    assert not liq.position.is_open


money = st.decimals(min_value=D("0"), max_value=D("100000"), places=2)
qty = st.integers(min_value=1, max_value=5000).map(lambda n: D(n) * D("0.001"))
price = st.integers(min_value=1_000, max_value=100_000).map(lambda n: D(n) / 10)


@settings(max_examples=200)
@given(money, money, money, money, st.sampled_from(["buy", "sell"]), qty, price, st.sampled_from([MAKER, TAKER]))
def test_a_spot_fill_never_makes_a_balance_negative(bf, bu, qf, qu, side, amount, px, liquidity):
    base, quote = Wallet(bf / 1000, bu / 1000), Wallet(qf, qu)
    try:
        r = engine.apply_spot_fill(SPOT, side, amount, px, liquidity, base=base, quote=quote, config=CFG)
    except InsufficientFunds:
        return
    assert min(r.base.free, r.base.used, r.quote.free, r.quote.used) >= 0
    assert r.fee >= 0
    # value is conserved apart from the fee
    assert (r.quote.total - quote.total) + (r.base.total - base.total) * px == -r.fee


@settings(max_examples=200)
@given(money, st.lists(st.tuples(st.sampled_from(["buy", "sell"]), qty, price), min_size=1, max_size=8),
       st.integers(min_value=1, max_value=50))
def test_perp_fills_never_make_a_balance_or_margin_negative(free, fills, leverage):
    w, pos = Wallet(free=free), engine.flat_position(leverage)
    for side, amount, px in fills:
        try:
            r = engine.apply_perp_fill(PERP, side, amount, px, TAKER, wallet=w, position=pos, config=CFG)
        except InsufficientFunds:
            continue
        assert r.fee >= 0
        w, pos = r.wallet, r.position
        assert w.free >= 0 and w.used >= 0 and pos.isolated_margin >= 0 and pos.contracts >= 0
        assert w.used == pos.isolated_margin  # with no open orders, used is exactly the position margin


def test_synthesized_book_is_sorted_uncrossed_and_on_ticks():
    book = engine.synthesize_book(COND, SPOT, CFG, levels=10)
    bids, asks = [p for p, _ in book.bids], [p for p, _ in book.asks]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < D("30000") < asks[0]
    assert all(engine.is_multiple(p, SPOT.tick_size) for p in bids + asks)
    assert all(q > 0 for _, q in book.bids + book.asks)


# === the gateway on PostgreSQL ==================================================================

T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
M5 = 300_000
N_BARS = 100
NOW = datetime(2026, 1, 2, tzinfo=UTC)  # the pinned wall clock: after every bar used here
NOW_MS = int(NOW.timestamp() * 1000)


def walk(n: int = N_BARS, start: float = 30000.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = np.round(start * np.exp(np.cumsum(rng.normal(0, 0.002, n))), 1)
    open_ = np.r_[start, close[:-1]]
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n)), 1)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n)), 1)
    vol = np.round(rng.uniform(20, 60, n), 3)
    return np.column_stack([T0 + M5 * np.arange(n), open_, high, low, close, vol])


@pytest.fixture
def market(db):
    from trading.marketdata.ingest import ingest
    from trading.models import MarketType, Symbol

    spot = Symbol.objects.create(exchange="paper", symbol="BTC/USDT", base="BTC", quote="USDT", sector="layer1",
                                 tick_size=D("0.01"), lot_size=D("0.0001"), min_notional=D("5"))
    perp = Symbol.objects.create(exchange="paper", symbol="BTC/USDT:USDT", base="BTC", quote="USDT", settle="USDT",
                                 market_type=MarketType.PERPETUAL, sector="layer1", tick_size=D("0.1"),
                                 lot_size=D("0.001"), min_notional=D("5"))
    Symbol.objects.create(exchange="binance", symbol="ETH/USDT", base="ETH", quote="USDT", tick_size=D("0.01"),
                          lot_size=D("0.001"))  # another exchange's symbol: not a paper market
    rows = walk()
    ingest(spot, "5m", rows)
    ingest(perp, "5m", rows)
    return {"spot": spot, "perp": perp, "rows": rows}


@pytest.fixture
def gw(market):
    from trading.exchanges.paper import PaperGateway, create_account

    create_account("alice", {"USDT": "100000", "BTC": "1"})
    return PaperGateway("alice", clock=lambda: NOW)


def last_close(market) -> Decimal:
    return D(repr(float(market["rows"][-1, 4])))


def next_bar(market, k: int = 1, **prices) -> list:
    """Bar k after the stored ones; prices default to a flat bar at the last close."""
    c = float(last_close(market))
    row = {"open": c, "high": c, "low": c, "close": c, "volume": 40.0} | prices
    return [T0 + M5 * (N_BARS - 1 + k), row["open"], row["high"], row["low"], row["close"], row["volume"]]


def balances(gw) -> dict:
    from trading.models import PaperBalance

    return {(b.currency, b.free, b.used) for b in PaperBalance.objects.filter(account__name=gw.account_name)}


@pytest.fixture
def cx(gw):
    """A ccxt instance that knows the paper markets (so fee currencies and market rules are checked)."""
    ex = ccxt.binanceusdm()
    ex.set_markets(gw.load_markets())
    return ex


def test_markets_come_from_paper_symbols_and_pass_ccxt(gw, cx):
    markets = gw.load_markets()
    assert set(markets) == {"BTC/USDT", "BTC/USDT:USDT"}
    for m in markets.values():
        validate_market(cx, {}, "loadMarkets", m)
    perp = markets["BTC/USDT:USDT"]
    assert perp["precision"] == {"amount": 0.001, "price": 0.1, "cost": None, "base": None, "quote": None}
    assert perp["limits"]["cost"]["min"] == 5.0 and perp["type"] == "swap" and perp["linear"] is True


def test_every_returned_structure_passes_ccxts_validators(gw, cx, market):
    now = NOW_MS
    bought = gw.create_order("BTC/USDT", "market", "buy", 0.5, params={"clientOrderId": "buy-1"})
    resting = gw.create_order("BTC/USDT", "limit", "buy", 0.1, 25000.0)
    gw.set_leverage(5, "BTC/USDT:USDT")
    gw.create_order("BTC/USDT:USDT", "market", "sell", 0.2)
    for o in (bought, resting, gw.fetch_order(bought["id"]), *gw.fetch_open_orders()):
        validate_order(cx, {}, "createOrder", o, o["symbol"], now)
    assert bought["status"] == "closed" and bought["filled"] == 0.5 and len(bought["trades"]) == 1
    assert resting["status"] == "open" and resting["remaining"] == 0.1
    trades = gw.fetch_my_trades()
    assert len(trades) == 2
    for t in trades:
        validate_trade(cx, {}, "fetchMyTrades", t, t["symbol"], now, False)
    ohlcv = gw.fetch_ohlcv("BTC/USDT", "5m", limit=50)
    assert len(ohlcv) == 50
    hourly = gw.fetch_ohlcv("BTC/USDT", "1h", since=T0)  # resampled from 5m: complete hours only
    assert len(hourly) == N_BARS // 12 and hourly[0][0] == T0
    for row in ohlcv + hourly:
        validate_ohlcv(cx, {}, "fetchOHLCV", row, "BTC/USDT", now)
        assert row[2] >= max(row[1], row[4]) >= min(row[1], row[4]) >= row[3]  # ccxt's check is a no-op in Python
    validate_balance(cx, {}, "fetchBalance", gw.fetch_balance())
    for symbol in ("BTC/USDT", "BTC/USDT:USDT"):
        ticker, book = gw.fetch_ticker(symbol), gw.fetch_order_book(symbol, 10)
        validate_ticker(cx, {}, "fetchTicker", ticker, symbol)
        validate_order_book(cx, {}, "fetchOrderBook", book, symbol)
        assert (ticker["bid"], ticker["ask"]) == (book["bids"][0][0], book["asks"][0][0])
        assert ticker["last"] == float(last_close(market)) and ticker["bid"] < ticker["last"] < ticker["ask"]
    positions = gw.fetch_positions()
    assert [p["symbol"] for p in positions] == ["BTC/USDT:USDT"]
    validate_position(cx, {}, "fetchPositions", positions[0], "BTC/USDT:USDT", now)
    assert positions[0]["side"] == "short" and positions[0]["leverage"] == 5


def test_a_market_buy_pays_slippage_and_taker_fee(gw, market):
    before = gw.fetch_balance()
    o = gw.create_order("BTC/USDT", "market", "buy", 0.5)
    last = float(last_close(market))
    assert last < o["average"] < last * 1.01  # slipped against the buyer, by little for 0.5 of ~40/bar
    assert o["fee"] == {"cost": pytest.approx(o["cost"] * 0.0005), "currency": "USDT"}
    assert o["trades"][0]["takerOrMaker"] == "taker"
    after = gw.fetch_balance()
    assert after["BTC"]["free"] == pytest.approx(before["BTC"]["free"] + 0.5)
    assert after["USDT"]["free"] == pytest.approx(before["USDT"]["free"] - o["cost"] - o["fee"]["cost"])


def test_state_survives_a_new_gateway_instance(gw, market):
    from trading.exchanges.paper import PaperGateway

    gw.create_order("BTC/USDT", "limit", "buy", 0.2, 25000.0, params={"clientOrderId": "rest-1"})
    gw.set_leverage(3, "BTC/USDT:USDT")
    gw.create_order("BTC/USDT:USDT", "market", "buy", 0.1)
    fresh = PaperGateway("alice", clock=lambda: NOW)  # what another process or a restart sees
    assert fresh.fetch_balance()["total"] == gw.fetch_balance()["total"]
    assert fresh.fetch_balance()["used"]["USDT"] > 0  # the open order's hold and the position margin
    assert [o["clientOrderId"] for o in fresh.fetch_open_orders()] == ["rest-1"]
    [pos] = fresh.fetch_positions()
    assert (pos["contracts"], pos["leverage"], pos["side"]) == (0.1, 3.0, "long")
    assert fresh.fetch_order(None, params={"clientOrderId": "rest-1"})["status"] == "open"


REJECTIONS = [
    ("beyond balance", dict(symbol="BTC/USDT", type="market", side="buy", amount=3.5),
     InsufficientFunds, r"buy 3.5 BTC/USDT at .* needs 10\d{4}\.\d+ USDT \(cost \+ fee\), free is 100000$"),
    ("sell more than held", dict(symbol="BTC/USDT", type="market", side="sell", amount=2),
     InsufficientFunds, "needs 2 BTC, free is 1"),
    ("limit beyond balance", dict(symbol="BTC/USDT", type="limit", side="buy", amount=6, price=20000.0),
     InsufficientFunds, r"buy 6 BTC/USDT \(open order\) needs 120060, free balance is 100000"),
    ("margin beyond balance at 2x", dict(symbol="BTC/USDT:USDT", type="limit", side="buy", amount=10, price=20000.0),
     InsufficientFunds, r"needs 100100, free balance is 100000"),  # 10 x 20000 / 2 + 0.05 % taker fee
    ("below min notional", dict(symbol="BTC/USDT", type="limit", side="buy", amount=0.0001, price=30000.0),
     InvalidOrder, r"notional 3 of BTC/USDT is below the minimum 5 \(0.0001 x 30000\)"),
    ("off lot size", dict(symbol="BTC/USDT", type="market", side="buy", amount=0.00015),
     InvalidOrder, "not a multiple of the lot size 0.0001"),
    ("off tick size", dict(symbol="BTC/USDT:USDT", type="limit", side="buy", amount=0.01, price=29000.05),
     InvalidOrder, "not a multiple of the tick size 0.1"),
    ("reduceOnly that would increase", dict(symbol="BTC/USDT:USDT", type="market", side="buy", amount=0.01,
                                            params={"reduceOnly": True}),
     InvalidOrder, r"would increase the position \(no position\)"),
    ("reduceOnly on spot", dict(symbol="BTC/USDT", type="market", side="sell", amount=0.01,
                                params={"reduceOnly": True}),
     InvalidOrder, "reduceOnly applies to perpetuals"),
    ("unknown symbol", dict(symbol="DOGE/USDT", type="market", side="buy", amount=1),
     BadSymbol, "DOGE/USDT"),
    ("other exchange's symbol", dict(symbol="ETH/USDT", type="market", side="buy", amount=1),
     BadSymbol, "ETH/USDT"),
    ("bad clientOrderId", dict(symbol="BTC/USDT", type="market", side="buy", amount=0.01,
                               params={"clientOrderId": "has space"}),
     InvalidOrder, "clientOrderId"),
]


@pytest.mark.parametrize(("case", "order", "error", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_name_the_reason_and_change_nothing(gw, market, case, order, error, reason):
    from trading.models import PaperOrder, PaperTrade

    gw.set_leverage(2, "BTC/USDT:USDT")
    before = balances(gw)
    with pytest.raises(error, match=reason):
        gw.create_order(**order)
    assert balances(gw) == before
    assert not PaperOrder.objects.exists() and not PaperTrade.objects.exists()


def test_duplicate_open_client_order_id_is_refused_until_the_order_is_gone(gw, market):
    gw.create_order("BTC/USDT", "limit", "buy", 0.1, 25000.0, params={"clientOrderId": "mine"})
    before = balances(gw)
    with pytest.raises(DuplicateClientOrderId, match="'mine' is already used by an open order"):
        gw.create_order("BTC/USDT", "market", "buy", 0.1, params={"clientOrderId": "mine"})
    assert balances(gw) == before and len(gw.fetch_orders()) == 1
    gw.cancel_order(None, params={"clientOrderId": "mine"})
    again = gw.create_order("BTC/USDT", "limit", "buy", 0.1, 25000.0, params={"clientOrderId": "mine"})
    assert again["status"] == "open"  # as on Binance: reusable once no open order holds it


def test_the_database_refuses_two_open_orders_with_one_client_order_id(gw, market):
    from django.db import IntegrityError, transaction

    from trading.models import PaperOrder

    gw.create_order("BTC/USDT", "limit", "buy", 0.1, 25000.0, params={"clientOrderId": "dup"})
    row = PaperOrder.objects.get()
    row.pk, row.exchange_order_id = None, "other"
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save(force_insert=True)


def test_a_reduce_only_order_cannot_exceed_the_position(gw, market):
    gw.set_leverage(5, "BTC/USDT:USDT")
    gw.create_order("BTC/USDT:USDT", "market", "buy", 0.1)
    before = balances(gw)
    with pytest.raises(InvalidOrder, match="exceeds the long position of 0.1"):
        gw.create_order("BTC/USDT:USDT", "market", "sell", 0.2, params={"reduceOnly": True})
    assert balances(gw) == before
    closed = gw.create_order("BTC/USDT:USDT", "market", "sell", 0.1, params={"reduceOnly": True})
    assert closed["status"] == "closed" and gw.fetch_positions() == []


def test_a_limit_order_rests_then_fills_when_a_later_bar_crosses(gw, market):
    from trading.exchanges.paper import process_bar

    limit = float(last_close(market)) - 300  # below the market: not marketable
    limit = round(limit, 2)
    o = gw.create_order("BTC/USDT", "limit", "buy", 0.5, limit)
    assert o["status"] == "open" and o["filled"] == 0
    held = gw.fetch_balance()["used"]["USDT"]
    assert held == pytest.approx(0.5 * limit * 1.0005)  # cost + worst-case fee held for the order
    report = process_bar("BTC/USDT", next_bar(market, 1, low=limit + 0.01), timeframe="5m", now=NOW)
    assert report.fills == 0 and gw.fetch_order(o["id"])["status"] == "open"  # a near miss does not fill
    process_bar("BTC/USDT", next_bar(market, 2, low=limit - 50), timeframe="5m", now=NOW)
    filled = gw.fetch_order(o["id"])
    assert filled["status"] == "closed" and filled["average"] == limit
    [t] = filled["trades"]
    assert t["takerOrMaker"] == "maker" and t["fee"]["cost"] == pytest.approx(0.5 * limit * 0.0002)
    bal = gw.fetch_balance()
    assert bal["used"]["USDT"] == 0 and bal["BTC"]["free"] == pytest.approx(1.5)
    assert bal["USDT"]["free"] == pytest.approx(100000 - 0.5 * limit * 1.0002)


def test_a_marketable_limit_order_takes_liquidity_at_the_market_not_at_its_limit(gw, market):
    last = float(last_close(market))
    o = gw.create_order("BTC/USDT", "limit", "buy", 0.5, round(last + 500, 2))
    assert o["status"] == "closed" and o["trades"][0]["takerOrMaker"] == "taker"
    assert last < o["average"] < last + 100  # price improvement: about the ask, far below the limit
    assert gw.fetch_balance()["used"]["USDT"] == 0


def test_a_perpetual_limit_order_holds_margin_then_opens_the_position_when_crossed(gw, market):
    from trading.exchanges.paper import process_bar

    gw.set_leverage(10, "BTC/USDT:USDT")
    limit = round(float(last_close(market)) - 300, 1)
    o = gw.create_order("BTC/USDT:USDT", "limit", "buy", 1, limit)
    assert gw.fetch_balance()["used"]["USDT"] == pytest.approx(limit / 10 + limit * 0.0005)  # margin + taker fee
    process_bar("BTC/USDT:USDT", next_bar(market, 1, low=limit - 10), timeframe="5m", now=NOW)
    assert gw.fetch_order(o["id"])["status"] == "closed"
    [pos] = gw.fetch_positions()
    assert pos["entryPrice"] == limit and pos["contracts"] == 1
    bal = gw.fetch_balance()["USDT"]
    assert bal["used"] == pytest.approx(limit / 10)  # only the position margin is held now
    assert bal["free"] == pytest.approx(100000 - limit / 10 - limit * 0.0002)  # maker fee


def test_a_large_limit_order_fills_over_several_bars(gw, market):
    from trading.exchanges.paper import process_bar

    limit = round(float(last_close(market)) - 100, 2)
    o = gw.create_order("BTC/USDT", "limit", "sell", 0.9, limit + 200)  # above the market: rests
    for k in (1, 2, 3):
        process_bar("BTC/USDT", next_bar(market, k, high=limit + 300, volume=4.0), timeframe="5m", now=NOW)
        got = gw.fetch_order(o["id"])
        assert got["filled"] == pytest.approx(min(0.4 * k, 0.9))  # 10 % of 4 per bar
    assert got["status"] == "closed" and len(got["trades"]) == 3
    # a re-delivered bar changes nothing
    process_bar("BTC/USDT", next_bar(market, 3, high=limit + 300, volume=4.0), timeframe="5m", now=NOW)
    assert len(gw.fetch_my_trades()) == 3


def test_a_market_order_larger_than_the_bar_volume_fills_partly_and_cancels_the_rest(market):
    from trading.exchanges.paper import PaperGateway, create_account

    create_account("whale", {"USDT": "1000000"})
    gw = PaperGateway("whale", clock=lambda: NOW)
    rows = market["rows"][-CFG.volatility_window_bars:]
    cap = float(np.floor(rows[:, 5].mean() * 0.10 * 10_000) / 10_000)  # 10 % of the mean bar volume, in lots
    assert 3 < cap < 5
    o = gw.create_order("BTC/USDT", "market", "buy", 10)
    assert o["status"] == "canceled" and o["filled"] == pytest.approx(cap)
    assert o["remaining"] == pytest.approx(10 - cap)
    assert "immediate-or-cancel" in o["info"]["statusReason"]
    bal = gw.fetch_balance()
    assert bal["BTC"]["free"] == pytest.approx(cap) and bal["USDT"]["used"] == 0  # nothing held for the rest


def test_latency_delays_the_fill_to_the_next_bars_open(gw, market):
    from trading.exchanges.paper import PaperGateway, process_bar

    slow_cfg = FillConfig(latency_ms=250)
    slow = PaperGateway("alice", config=slow_cfg, clock=lambda: NOW)
    o = slow.create_order("BTC/USDT", "market", "buy", 0.1)
    assert o["status"] == "open" and o["filled"] == 0
    # a bar that opened before the order arrived does not count
    process_bar("BTC/USDT", next_bar(market, 0), timeframe="5m", config=slow_cfg, now=NOW)
    assert slow.fetch_order(o["id"])["status"] == "open"
    process_bar("BTC/USDT", next_bar(market, 1, open=31000.0, high=31100.0, low=30900.0, close=31050.0),
                timeframe="5m", config=slow_cfg, now=NOW)
    done = slow.fetch_order(o["id"])
    assert done["status"] == "closed" and 31000 < done["average"] < 31000 * 1.01
    assert slow.fetch_balance()["used"]["USDT"] == 0  # the worst-case hold was released


def test_cancel_releases_the_hold_and_unknown_orders_are_named(gw, market):
    before = gw.fetch_balance()
    o = gw.create_order("BTC/USDT", "limit", "sell", 0.5, 40000.0)
    assert gw.fetch_balance()["used"]["BTC"] == 0.5
    canceled = gw.cancel_order(o["id"])
    assert canceled["status"] == "canceled"
    assert gw.fetch_balance()["total"] == before["total"] and gw.fetch_balance()["used"]["BTC"] == 0
    with pytest.raises(OrderNotFound, match="canceled, not open"):
        gw.cancel_order(o["id"])
    with pytest.raises(OrderNotFound, match="'nope'"):
        gw.fetch_order("nope")


def test_leverage_and_forced_liquidation(gw, market):
    from trading.exchanges.paper import process_bar

    gw.set_leverage(20, "BTC/USDT:USDT")
    o = gw.create_order("BTC/USDT:USDT", "market", "buy", 1)
    entry = o["average"]
    [pos] = gw.fetch_positions()
    assert pos["initialMargin"] == pytest.approx(entry / 20, rel=1e-9)
    expected_lp = (entry - entry / 20) / (1 - 0.004)  # tier 1 by notional ~30k: 0.4 %
    assert pos["liquidationPrice"] == pytest.approx(expected_lp, rel=1e-6)
    usdt = gw.fetch_balance()["USDT"]
    assert usdt["used"] == pytest.approx(entry / 20, rel=1e-9)
    with pytest.raises(InvalidOrder, match="while a long position"):
        gw.set_leverage(10, "BTC/USDT:USDT")
    lp = pos["liquidationPrice"]
    old = market["rows"][-1].tolist()  # the bar before the position opened: re-delivered, it cannot liquidate
    process_bar("BTC/USDT:USDT", [old[0], old[1], old[2], lp - 100, old[4], old[5]], timeframe="5m", now=NOW)
    process_bar("BTC/USDT:USDT", next_bar(market, 1, low=lp + 5), timeframe="5m", now=NOW)
    assert len(gw.fetch_positions()) == 1  # close, not there yet
    report = process_bar("BTC/USDT:USDT", next_bar(market, 2, low=lp - 100, close=lp - 50), timeframe="5m",
                         now=NOW)
    assert report.liquidations == 1
    assert gw.fetch_positions() == []
    after = gw.fetch_balance()["USDT"]
    assert after["free"] == pytest.approx(usdt["free"]) and after["used"] == 0  # exactly the margin is lost
    liq = gw.fetch_my_trades("BTC/USDT:USDT")[-1]
    assert liq["side"] == "sell" and liq["price"] == pytest.approx(lp)
    liq_order = gw.fetch_order(liq["order"])
    assert liq_order["clientOrderId"].startswith("autoclose-") and "liquidation" in liq_order["info"]["statusReason"]


def test_funding_on_a_perpetual(gw, market):
    from trading.exchanges.paper import PaperGateway, create_account, process_bar
    from trading.models import PaperFunding, PaperPosition

    gw.set_leverage(5, "BTC/USDT:USDT")
    gw.create_order("BTC/USDT:USDT", "market", "buy", 1)
    create_account("bob", {"USDT": "100000"})
    bob = PaperGateway("bob", clock=lambda: NOW)
    bob.set_leverage(5, "BTC/USDT:USDT")
    bob.create_order("BTC/USDT:USDT", "market", "sell", 1)
    margin = {a: PaperPosition.objects.get(account__name=a).isolated_margin for a in ("alice", "bob")}
    # the bar 15:55-16:00 ends at a funding time (00:00, 08:00, 16:00 UTC)
    t = int(datetime(2026, 1, 1, 15, 55, tzinfo=UTC).timestamp() * 1000)
    funding_bar = [t, 30000.0, 30010.0, 29990.0, 30000.0, 40.0]
    report = process_bar("BTC/USDT:USDT", funding_bar, timeframe="5m", funding_rate="0.0003", now=NOW)
    assert report.funding_payments == 2
    paid = {f.account.name: f.amount for f in PaperFunding.objects.select_related("account")}
    assert paid == {"alice": D("-9"), "bob": D("9")}  # 1 x 30000 x 0.03 %: the long pays the short
    for name, delta in (("alice", D("-9")), ("bob", D("9"))):
        assert PaperPosition.objects.get(account__name=name).isolated_margin == margin[name] + delta
    process_bar("BTC/USDT:USDT", funding_bar, timeframe="5m", funding_rate="0.0003", now=NOW)  # again
    assert PaperFunding.objects.count() == 2  # paid once
    [pos] = gw.fetch_positions()
    assert pos["positionMargin"] == pytest.approx(float(margin["alice"] - 9))


def test_on_new_bars_takes_the_feeds_shape(gw, market):
    from trading.exchanges.paper import on_new_bars

    limit = round(float(last_close(market)) - 200, 2)
    gw.create_order("BTC/USDT", "limit", "buy", 0.1, limit)
    rows = np.array([next_bar(market, 1), next_bar(market, 2, low=limit - 1)])
    report = on_new_bars({"BTC/USDT": rows, "BTC/USDT:USDT": rows, "NOT/LISTED": rows}, timeframe="5m", now=NOW)
    assert (report.fills, report.accounts) == (1, 1)
    assert gw.fetch_open_orders() == []


def test_a_resting_reduce_only_order_counts_against_the_position_and_dies_with_it(gw, market):
    from trading.exchanges.paper import process_bar

    gw.set_leverage(5, "BTC/USDT:USDT")
    gw.create_order("BTC/USDT:USDT", "market", "buy", 0.1)
    take_profit = round(float(last_close(market)) + 500, 1)
    tp = gw.create_order("BTC/USDT:USDT", "limit", "sell", 0.1, take_profit, params={"reduceOnly": True})
    assert tp["status"] == "open" and tp["info"]["reserved"] == "0"  # reduce-only holds nothing
    with pytest.raises(InvalidOrder, match="other reduce-only orders: 0.1"):
        gw.create_order("BTC/USDT:USDT", "market", "sell", 0.1, params={"reduceOnly": True})
    gw.create_order("BTC/USDT:USDT", "market", "sell", 0.1)  # a plain order closes the position
    assert gw.fetch_positions() == []
    process_bar("BTC/USDT:USDT", next_bar(market, 1, high=take_profit + 10), timeframe="5m", now=NOW)
    dead = gw.fetch_order(tp["id"])
    assert dead["status"] == "canceled" and "no position left" in dead["info"]["statusReason"]
    assert gw.fetch_positions() == []  # it did not open a short


def test_unknown_symbols_and_timeframes_are_named(gw):
    from trading.exchanges.errors import BadTimeframe

    with pytest.raises(BadSymbol, match="'NOPE/USDT'"):
        gw.fetch_ticker("NOPE/USDT")
    with pytest.raises(BadTimeframe, match="'7m'"):
        gw.fetch_ohlcv("BTC/USDT", "7m")
    with pytest.raises(BadSymbol, match="'NOPE/USDT'"):
        gw.fetch_order_book("NOPE/USDT")


def test_an_unknown_account_is_named(market):
    from trading.exchanges.paper import PaperGateway

    with pytest.raises(AuthenticationError, match="'nobody' does not exist"):
        PaperGateway("nobody").fetch_balance()


@pytest.mark.django_db(transaction=True)
def test_two_processes_cannot_spend_the_same_balance(market, monkeypatch):
    """Two threads (two database sessions) each try to buy for 60 % of the balance at once;
    the first to take the account lock holds it a while: the second must wait, then see
    what the first committed, and be refused."""
    import time

    from django.db import connection

    from trading.exchanges.paper import PaperGateway, create_account

    if connection.vendor != "postgresql":  # the in-memory SQLite test database is not shared across threads
        pytest.skip("row locking across sessions needs PostgreSQL")
    create_account("carol", {"USDT": "20000"})
    price = round(float(last_close(market)) - 100, 2)  # a resting limit order: the whole hold is visible
    amount = round(12000 / price, 4)
    original_hold = engine.hold

    def slow_hold(*args, **kwargs):  # runs inside the locked transaction
        time.sleep(0.3)
        return original_hold(*args, **kwargs)

    monkeypatch.setattr(engine, "hold", slow_hold)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def buy():
        try:
            gw = PaperGateway("carol", clock=lambda: NOW)
            gw.load_markets()
            barrier.wait(timeout=10)
            gw.create_order("BTC/USDT", "limit", "buy", amount, price)
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=buy) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert sorted(outcomes) == ["ok", "refused"]
    bal = PaperGateway("carol", clock=lambda: NOW).fetch_balance()
    hold = amount * price * 1.0005
    assert bal["USDT"]["used"] == pytest.approx(hold) and bal["USDT"]["free"] == pytest.approx(20000 - hold)
