"""Fixtures for execution tests: a small paper market with fresh prices and a funded account.

A random walk of 5m bars ending at the current bar, ingested for three perpetuals in two
sectors and one spot market; the paper account `default` holds 100,000 USDT; the feed is
marked fresh so the price collar has a current reference price; the execution gateway is the
real paper exchange.
"""
from __future__ import annotations

import time
from decimal import Decimal

import numpy as np

D = Decimal
M5 = 300_000
BARS = 300

SYMBOLS = [
    # symbol, base, sector, market type, tick, lot, start price, daily-ish volume per bar
    ("BTC/USDT:USDT", "BTC", "layer1", "swap", "0.1", "0.001", 60000.0, 400.0),
    ("ETH/USDT:USDT", "ETH", "layer1", "swap", "0.01", "0.01", 3000.0, 4000.0),
    ("DOGE/USDT:USDT", "DOGE", "meme", "swap", "0.00001", "1", 0.2, 5e7),
    ("BTC/USDT", "BTC", "layer1", "spot", "0.01", "0.0001", 60000.0, 400.0),
]


def walk(start: float, n: int, end_ms: int, seed: int, volume: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[start], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.0008, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.0008, n))
    vol = volume * rng.uniform(0.5, 1.5, n)
    t = end_ms - M5 * np.arange(n)[::-1]
    return np.column_stack([t, open_, high, low, close, vol])


def clear_app_cache() -> None:
    """Delete this app's cache keys (Django's `qt:` prefix) but not the broker's queues, which
    share the Redis database: cache.clear() would FLUSHDB under running workers."""
    import redis
    from django.conf import settings

    r = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(r.scan_iter(match="qt:*", count=1000))
    if keys:
        r.delete(*keys)


def build_market(*, equity: str = "100000", account: str = "default") -> dict:
    from trading.exchanges.account import use_gateway
    from trading.exchanges.paper import PaperGateway, create_account
    from trading.execution import orders
    from trading.marketdata.ingest import ingest
    from trading.marketdata.reference import mark_feed_ok
    from trading.models import Symbol

    clear_app_cache()
    now_ms = int(time.time() * 1000)
    last_open = now_ms - now_ms % M5 - M5  # the last closed bar
    out = {}
    for i, (name, base, sector, mtype, tick, lot, price, volume) in enumerate(SYMBOLS):
        sym = Symbol.objects.create(exchange="paper", symbol=name, base=base, quote="USDT",
                                    settle="USDT" if mtype == "swap" else "", market_type=mtype, sector=sector,
                                    tick_size=D(tick), lot_size=D(lot), min_notional=D("5"))
        rows = walk(price, BARS, last_open, seed=i + 1, volume=volume)
        ingest(sym, "5m", rows)
        out[name] = sym
    create_account(account, {"USDT": equity})
    mark_feed_ok("paper")
    gw = PaperGateway(account)
    use_gateway(gw)
    orders.reset_reconciled()
    from risk.services.validation import forget_day_start

    forget_day_start()
    return {"symbols": out, "gateway": gw}


def last_close(symbol: str) -> Decimal:
    from trading.marketdata.reference import reference_price

    return reference_price("paper", symbol)[0]


def rl_decision_for(signal, **sizing) -> dict:
    """An rl.decision payload sizing the published `signal` envelope, as the inference worker
    would make it (the signal's id, price, confidence and model versions travel with it)."""
    s = signal.data()
    return {"symbol": s.symbol, "action": s.action, "agent_action": 0.5, "kelly_fraction": 0.2,
            "final_size_usd": "1000", "agent_trained": True, "reason": "test", "signal_event_id": signal.event_id,
            "confidence": s.confidence, "reference_price": s.price, "model_versions": dict(s.model_versions),
            **sizing}
