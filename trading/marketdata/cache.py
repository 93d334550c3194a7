"""The latest bar of every symbol, in Redis (Django's cache), for every worker.

Written by the live feed after each commit; read with `latest_bars` by anything that needs
"the price now" without a database query (the risk layer's price collar and the dashboard are
its intended readers; the paper exchange reads its own fills' prices from the database).
Falls back to the database when the cache is cold (after a Redis restart).
"""
from __future__ import annotations

from django.core.cache import cache

from trading.marketdata import selectors, timeframes
from trading.models import Symbol

# A cached bar outlives several polls but not a long outage: after this, readers go to the DB.
LATEST_BAR_TTL_SECONDS = 3600


def _key(exchange: str, symbol: str, timeframe: str) -> str:
    return f"bar:latest:{exchange}:{timeframe}:{symbol}"


def store_latest(exchange: str, timeframe: str, latest: dict[str, list[float]]) -> None:
    """latest: {unified symbol: [open_time_ms, open, high, low, close, volume]}."""
    cache.set_many({_key(exchange, s, timeframe): [float(x) for x in row] for s, row in latest.items()},
                   timeout=LATEST_BAR_TTL_SECONDS)


def latest_bars(exchange: str, timeframe: str, symbols: list[str]) -> dict[str, list[float]]:
    """The newest bar per symbol: from the cache, the database for the ones it misses."""
    timeframes.seconds(timeframe)
    keys = {_key(exchange, s, timeframe): s for s in symbols}
    found = {keys[k]: v for k, v in cache.get_many(list(keys)).items()}
    missing = [s for s in symbols if s not in found]
    if missing:
        syms = selectors.resolve_symbols(missing, exchange)
        rows = selectors.last_bars([s.pk for s in syms], timeframe, 1)
        fresh = {s.symbol: [float(x) for x in rows[s.pk][-1]] for s in syms if len(rows[s.pk])}
        if fresh:
            store_latest(exchange, timeframe, fresh)
        found.update(fresh)
    return found


def latest_bar(exchange: str, timeframe: str, symbol: str) -> list[float] | None:
    return latest_bars(exchange, timeframe, [symbol]).get(symbol)


def active_symbols(exchange: str) -> list[Symbol]:
    return list(Symbol.objects.filter(exchange=exchange, active=True).order_by("symbol"))
