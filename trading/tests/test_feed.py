"""The live feed: the simulator (default) and an exchange through ccxt against the fake Binance."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from qtweb.events.models import Event
from trading.marketdata import cache, feed, timeframes
from trading.models import Candle, MarketType, Symbol
from trading.simulator import service as simulator

pytestmark = pytest.mark.django_db

M5 = 300_000


@pytest.fixture(autouse=True)
def forget_announced_bars(redis_conn):
    """The feed's per-symbol markers live in Redis, which outlives each test's database."""
    for key in redis_conn.scan_iter("*feed:announced:*"):
        redis_conn.delete(key)
    for key in redis_conn.scan_iter("*bar:latest:*"):
        redis_conn.delete(key)


def test_simulator_feed_stores_caches_and_publishes_each_new_bar_once():
    t0 = timeframes.floor_ms(int(time.time() * 1000), "5m")
    seeded = simulator.seed_history(days=1, seed=7, now_ms=t0, speed_factor=1.0)
    n_symbols = seeded.symbols
    before = Candle.objects.count()

    result = feed.run_once(exchange="paper", timeframe="5m", now_ms=t0 + 3 * M5 + 1)
    assert len(result.new_bars) == n_symbols
    assert {len(rows) for rows in result.new_bars.values()} == {3}
    assert Candle.objects.count() == before + 3 * n_symbols
    assert result.closed_published == 3 * n_symbols
    bars = Event.objects.filter(type="market.bar")
    assert bars.count() == 3 * n_symbols
    assert len({e.trace_id for e in bars}) == 1  # one poll, one trace

    btc = result.new_bars["BTC/USDT:USDT"]
    assert cache.latest_bar("paper", "5m", "BTC/USDT:USDT") == [float(x) for x in btc[-1]]
    assert btc[-1, 0] + M5 <= t0 + 3 * M5 + 1  # never a bar from the future

    again = feed.run_once(exchange="paper", timeframe="5m", now_ms=t0 + 3 * M5 + 1)
    assert again.new_bars == {} and again.closed_published == 0
    assert Event.objects.filter(type="market.bar").count() == 3 * n_symbols


def test_exchange_feed_publishes_closed_bars_and_skips_a_failing_symbol(monkeypatch):
    from tests.support.fake_binance import FakeBinance
    from trading.exchanges.ccxt_backend import CcxtGateway

    with FakeBinance() as fake:
        monkeypatch.setenv("EXCHANGE_API_KEY", fake.api_key)
        monkeypatch.setenv("EXCHANGE_API_SECRET", fake.api_secret)
        for base, tick, lot in (("BTC", "0.1", "0.001"), ("ETH", "0.01", "0.001")):
            Symbol.objects.create(exchange="binanceusdm", symbol=f"{base}/USDT:USDT", base=base, quote="USDT",
                                  settle="USDT", market_type=MarketType.PERPETUAL, tick_size=Decimal(tick),
                                  lot_size=Decimal(lot))
        Symbol.objects.create(exchange="binanceusdm", symbol="NOPE/USDT:USDT", base="NOPE", quote="USDT",
                              settle="USDT", market_type=MarketType.PERPETUAL, tick_size=1, lot_size=1)
        gw = CcxtGateway("binanceusdm", urls=fake.base_url, timeout_ms=1000, rate_limit_ms=1,
                         backoff_seconds=0.01, max_backoff_seconds=0.05)
        try:
            now = int(time.time() * 1000)
            result = feed.run_once(exchange="binanceusdm", timeframe="5m", gateway=gw, now_ms=now)
        finally:
            gw.close()
    assert set(result.new_bars) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert "NOPE/USDT:USDT" in result.errors and "NOPE" in result.errors["NOPE/USDT:USDT"]
    stored = Candle.objects.filter(symbol__symbol="BTC/USDT:USDT").count()
    assert stored == len(result.new_bars["BTC/USDT:USDT"]) > 1
    forming = sum(int(rows[-1, 0] + M5 > now) for rows in result.new_bars.values())
    total = sum(len(rows) for rows in result.new_bars.values())
    assert result.closed_published == min(total - forming, 2 * feed.MAX_ANNOUNCED_BARS_PER_SYMBOL)
    assert Event.objects.filter(type="market.bar").count() == result.closed_published


def test_an_exchange_poll_never_announces_a_bar_twice(monkeypatch):
    from tests.support.fake_binance import FakeBinance
    from trading.exchanges.ccxt_backend import CcxtGateway

    with FakeBinance() as fake:
        monkeypatch.setenv("EXCHANGE_API_KEY", fake.api_key)
        monkeypatch.setenv("EXCHANGE_API_SECRET", fake.api_secret)
        Symbol.objects.create(exchange="binanceusdm", symbol="BTC/USDT:USDT", base="BTC", quote="USDT",
                              settle="USDT", market_type=MarketType.PERPETUAL, tick_size=Decimal("0.1"),
                              lot_size=Decimal("0.001"))
        gw = CcxtGateway("binanceusdm", urls=fake.base_url, timeout_ms=1000, rate_limit_ms=1)
        try:
            now = int(time.time() * 1000)
            first = feed.run_once(exchange="binanceusdm", timeframe="5m", gateway=gw, now_ms=now)
            second = feed.run_once(exchange="binanceusdm", timeframe="5m", gateway=gw, now_ms=now)
            later = feed.run_once(exchange="binanceusdm", timeframe="5m", gateway=gw,
                                  now_ms=timeframes.floor_ms(now, "5m") + M5 + 1)
        finally:
            gw.close()
    assert first.closed_published > 0
    assert second.closed_published == 0  # the poll starts at the last stored bar: seen, not re-announced
    announced = [e.payload["open_time"] for e in Event.objects.filter(type="market.bar")]
    assert len(announced) == len(set(announced)) == first.closed_published + later.closed_published


def test_a_long_catch_up_is_stored_but_only_the_newest_bars_are_announced():
    t0 = timeframes.floor_ms(int(time.time() * 1000), "5m")
    seeded = simulator.seed_history(days=1, seed=3, now_ms=t0 - 100 * M5, speed_factor=1.0)
    result = feed.run_once(exchange="paper", timeframe="5m", now_ms=t0 + 1)
    assert {len(r) for r in result.new_bars.values()} == {100}
    assert result.closed_published == feed.MAX_ANNOUNCED_BARS_PER_SYMBOL * seeded.symbols


def test_unknown_timeframe_is_named():
    from trading.exchanges.errors import BadTimeframe

    with pytest.raises(BadTimeframe, match="'3m'"):
        feed.run_once(exchange="paper", timeframe="3m")


def test_feed_settles_paper_funding_at_the_simulators_rate():
    from trading.exchanges.paper import PaperGateway, create_account
    from trading.models import PaperFunding

    eight_h = 8 * 3600 * 1000
    boundary = (int(time.time() * 1000) // eight_h) * eight_h  # the last funding time
    t0 = boundary - 10 * 60 * 1000  # ten minutes before it
    simulator.seed_history(days=1, seed=11, now_ms=t0, speed_factor=1.0)
    create_account("default", {"USDT": "100000"})
    gw = PaperGateway()
    order = gw.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    assert order["status"] == "closed" and order["filled"] == 0.01

    for k in range(1, 7):  # one bar per poll, as at speed 1: the boundary bar comes alone
        feed.run_once(exchange="paper", timeframe="5m", now_ms=t0 + k * M5 + 1)
    payment = PaperFunding.objects.get(symbol__symbol="BTC/USDT:USDT", account__name="default")
    assert timeframes.to_ms(payment.funding_time) == boundary
    rates = dict(simulator.funding_rates_get()["BTC/USDT:USDT"])
    assert float(payment.rate) == pytest.approx(rates[boundary])
    assert (payment.amount < 0) == (rates[boundary] > 0)  # a long pays a positive rate
