"""The reference price the risk layer's price collar and the execution layer's arrival price
use: the newest bar's close from the latest-bar cache, with its age.

Age is the wall-clock time since the live feed last completed a poll of the exchange (a
successful poll confirms the cached prices are the current ones, even between bar closes), or,
for a symbol the feed has been failing to fetch, since its first failure; no poll on record
means no fresh price, and the collar rejects. A feed that stops makes every
reference stale within `reference_price_max_age_seconds`, which stops new orders: trading on
prices nobody is watching is the failure this guards against.
"""
from __future__ import annotations

import time
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache as django_cache

from core.decimals import to_decimal
from trading.marketdata import cache

FEED_OK_TTL_SECONDS = 24 * 3600


def _feed_key(exchange: str) -> str:
    return f"feed:last_ok:{exchange}"


def _failing_key(exchange: str, symbol: str) -> str:
    return f"feed:failing_since:{exchange}:{symbol}"


def mark_feed_ok(exchange: str, at: float | None = None, *, ok_symbols=(), failed_symbols=()) -> None:
    """After a poll: the exchange answered (`at`); `ok_symbols` were fetched, `failed_symbols`
    were not (their prices age from their first failure, whatever the rest of the feed does)."""
    now = float(at if at is not None else time.time())
    django_cache.set(_feed_key(exchange), now, FEED_OK_TTL_SECONDS)
    if ok_symbols:
        django_cache.delete_many([_failing_key(exchange, s) for s in ok_symbols])
    for symbol in failed_symbols:
        django_cache.add(_failing_key(exchange, symbol), now, FEED_OK_TTL_SECONDS)  # keeps the first failure


def feed_age_seconds(exchange: str, now: float | None = None) -> float | None:
    last = django_cache.get(_feed_key(exchange))
    if last is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - float(last))


def reference_price(exchange: str, symbol: str, timeframe: str | None = None) -> tuple[Decimal | None, float | None]:
    """(price, age in seconds); (None, None) when no bar is known for the symbol."""
    bar = cache.latest_bar(exchange, timeframe or settings.UNIVERSE_TIMEFRAME, symbol)
    if not bar:
        return None, None
    age = feed_age_seconds(exchange)
    failing_since = django_cache.get(_failing_key(exchange, symbol))
    if age is not None and failing_since is not None:
        age = max(age, time.time() - float(failing_since))
    return to_decimal(bar[4], "close"), age


def latest_bar_row(exchange: str, symbol: str, timeframe: str | None = None) -> list[float] | None:
    """[open_time_ms, open, high, low, close, volume] of the newest bar (cache, then DB)."""
    return cache.latest_bar(exchange, timeframe or settings.UNIVERSE_TIMEFRAME, symbol)
