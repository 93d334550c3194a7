"""The live feed: new bars for the active universe, every few seconds from beat.

Source by MARKET_EXCHANGE: "paper" advances the market simulator (trading/simulator);
any other id polls the exchange through the gateway. Either way each new bar is stored,
the latest bar per symbol is cached for every worker, one `market.bar` event per closed bar
is published (in the transaction that stored it), and the paper exchange is told so it
can fill resting orders, liquidate and pay funding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction

from qtweb.events import EventType
from qtweb.events.bus import publish_many
from qtweb.logging import get_logger
from trading.marketdata import cache, reference, selectors, timeframes
from trading.marketdata.ingest import ingest
from trading.models import Symbol

log = get_logger(__name__)

# Bars asked from an exchange per symbol and poll: enough to repair a short outage.
POLL_LIMIT_BARS = 100
# Closed bars announced per symbol and poll. After a long stop the feed catches up thousands
# of bars; they are stored, but only the newest are announced as `market.bar` (consumers act
# on live bars, and one poll must stay well inside its time limit).
MAX_ANNOUNCED_BARS_PER_SYMBOL = 12
# How long the "last announced bar" marker lives in the cache (a week of polls).
ANNOUNCED_TTL_SECONDS = 7 * 24 * 3600


@dataclass
class FeedResult:
    exchange: str
    timeframe: str
    new_bars: dict[str, np.ndarray] = field(default_factory=dict)  # symbol -> rows stored this poll
    closed_published: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # symbol -> why it was skipped


def _now_ms() -> int:
    return int(time.time() * 1000)


def _bar_payload(symbol: str, timeframe: str, row) -> dict:
    t, o, h, lo, c, v = row
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "open_time": timeframes.to_datetime(int(t)).isoformat(),
        "open": repr(float(o)),
        "high": repr(float(h)),
        "low": repr(float(lo)),
        "close": repr(float(c)),
        "volume": repr(float(v)),
    }


def poll_exchange(gateway, symbols: list[Symbol], timeframe: str, *, now_ms: int | None = None) -> FeedResult:
    """Fetch bars newer than the last stored one for each symbol; a symbol that fails is
    reported and skipped, the others proceed."""
    now_ms = now_ms or _now_ms()
    result = FeedResult(exchange=gateway.id, timeframe=timeframe)
    last = selectors.last_bars([s.pk for s in symbols], timeframe, 1)
    for sym in symbols:
        since = int(last[sym.pk][-1, 0]) if len(last[sym.pk]) else None
        try:
            rows = np.asarray(
                gateway.fetch_ohlcv(sym.symbol, timeframe, since=since, limit=POLL_LIMIT_BARS), dtype=float
            )
            if len(rows) == 0:
                continue
            ingest(sym, timeframe, rows)
        except Exception as exc:  # one bad symbol or response must not stop the feed
            result.errors[sym.symbol] = f"{type(exc).__name__}: {exc}"
            log.warning("feed skipped a symbol", symbol=sym.symbol, error=result.errors[sym.symbol])
            continue
        result.new_bars[sym.symbol] = rows
    return result


def _closed(rows: np.ndarray, timeframe: str, now_ms: int) -> np.ndarray:
    return rows[rows[:, 0] + timeframes.milliseconds(timeframe) <= now_ms]


def _to_announce(exchange: str, timeframe: str, new_bars: dict[str, np.ndarray], now_ms: int) -> dict[str, np.ndarray]:
    """Closed bars not announced before. An exchange poll starts at the last stored bar, so the
    same closed bar can come back; a per-symbol marker in the cache remembers the last one
    announced (lost with Redis: then at most that one bar is announced twice)."""
    from django.core.cache import cache as dj_cache

    keys = {s: f"feed:announced:{exchange}:{timeframe}:{s}" for s in new_bars}
    marks = dj_cache.get_many(list(keys.values()))
    out = {}
    for symbol, rows in new_bars.items():
        closed = rows if exchange == "paper" else _closed(rows, timeframe, now_ms)
        last = marks.get(keys[symbol])
        if last is not None:
            closed = closed[closed[:, 0] > last]
        if len(closed):
            out[symbol] = closed[-MAX_ANNOUNCED_BARS_PER_SYMBOL:]
    return out


def _mark_announced(exchange: str, timeframe: str, announced: dict[str, np.ndarray]) -> None:
    from django.core.cache import cache as dj_cache

    dj_cache.set_many(
        {f"feed:announced:{exchange}:{timeframe}:{s}": float(rows[-1, 0]) for s, rows in announced.items()},
        timeout=ANNOUNCED_TTL_SECONDS,
    )


def run_once(
    *, exchange: str | None = None, timeframe: str | None = None, gateway=None, now_ms: int | None = None
) -> FeedResult:
    """One poll. `now_ms` (tests, replays) stands in for the wall clock."""
    exchange = exchange or settings.MARKET_EXCHANGE
    timeframe = timeframe or settings.UNIVERSE_TIMEFRAME
    timeframes.seconds(timeframe)
    now_ms = now_ms or _now_ms()
    with transaction.atomic():
        if exchange == "paper":
            from trading.simulator import service as simulator

            result = FeedResult(
                exchange=exchange,
                timeframe=timeframe,
                new_bars=simulator.advance_for_feed(timeframe=timeframe, now_ms=now_ms),
            )
        else:
            if gateway is None:
                from trading.exchanges.factory import get_gateway

                gateway = get_gateway(exchange)
            result = poll_exchange(gateway, cache.active_symbols(exchange), timeframe, now_ms=now_ms)
        # The simulator only emits finished bars (on its own clock, which runs ahead of the wall
        # clock at demo speeds); an exchange also returns the still-forming one, which is stored
        # and cached but not announced until it closes.
        announce = _to_announce(exchange, timeframe, result.new_bars, now_ms)
        events = [
            (EventType.MARKET_BAR, _bar_payload(symbol, timeframe, row))
            for symbol, rows in announce.items()
            for row in rows
        ]
        if events:
            publish_many(events, source="exec-risk-service")
        result.closed_published = len(events)
        if exchange == "paper" and result.new_bars:
            from trading.exchanges.paper import on_new_bars
            from trading.simulator import service as simulator

            # The simulator's own funding rates (8-hourly, leaning with the trend) settle the
            # paper perpetuals, not a flat default.
            on_new_bars(result.new_bars, timeframe=timeframe, funding_rates=simulator.funding_rates_get())
    if announce:
        _mark_announced(exchange, timeframe, announce)
    if result.new_bars:  # after the commit: readers never see a bar the database does not have
        cache.store_latest(exchange, timeframe, {s: list(r[-1]) for s, r in result.new_bars.items()})
    # the cached prices are confirmed current as of now, except those of symbols that failed
    # (a symbol that recovers brings the bars it missed, so new bars clear its failure)
    reference.mark_feed_ok(exchange, ok_symbols=list(result.new_bars), failed_symbols=list(result.errors))
    return result
