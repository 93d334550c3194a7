"""Reading candles: "the last N bars of M symbols" as float arrays, ready for features.

Prices are stored exactly (NUMERIC) and read here as float64: features and models work in
floats; money math (orders, PnL) reads Decimals from the models or the exchange instead.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db import connection

from trading.exchanges.errors import BadSymbol
from trading.marketdata import timeframes
from trading.models import Candle, Symbol

EMPTY = np.empty((0, 6))


def resolve_symbols(names: Iterable[str], exchange: str) -> list[Symbol]:
    """Symbols by unified name; an unknown one raises BadSymbol naming it."""
    wanted = list(dict.fromkeys(names))
    found = {s.symbol: s for s in Symbol.objects.filter(exchange=exchange, symbol__in=wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise BadSymbol(f"unknown symbol(s) on {exchange}: {', '.join(missing)}")
    return [found[n] for n in wanted]


def stored_timeframes(symbol_id: int) -> list[str]:
    return list(Candle.objects.filter(symbol_id=symbol_id).values_list("timeframe", flat=True).distinct())


def last_bars(symbol_ids: list[int], timeframe: str, n: int) -> dict[int, np.ndarray]:
    """{symbol_id: rows [open_time_ms, open, high, low, close, volume]} oldest first, at most n each."""
    timeframes.seconds(timeframe)
    if n <= 0 or not symbol_ids:
        return {sid: EMPTY for sid in symbol_ids}
    table = Candle._meta.db_table
    out: dict[int, np.ndarray] = {}
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # One round trip; LATERAL walks each symbol's unique index backwards, LIMIT n.
            cur.execute(
                f"SELECT s.id, (extract(epoch FROM c.open_time) * 1000)::float8, c.open::float8, c.high::float8, "
                f"c.low::float8, c.close::float8, c.volume::float8 FROM unnest(%s::bigint[]) AS s(id) "
                f"CROSS JOIN LATERAL (SELECT open_time, open, high, low, close, volume FROM {table} "
                f"WHERE symbol_id = s.id AND timeframe = %s ORDER BY open_time DESC LIMIT %s) c",
                [list(symbol_ids), timeframe, n],
            )
            rows = cur.fetchall()
            if rows:
                data = np.array(rows, dtype=float)
                for sid in symbol_ids:
                    sel = data[data[:, 0] == sid, 1:]
                    out[sid] = sel[::-1] if len(sel) else EMPTY
        else:
            for sid in symbol_ids:
                cur.execute(
                    f"SELECT open_time, open, high, low, close, volume FROM {table} WHERE symbol_id = %s "
                    f"AND timeframe = %s ORDER BY open_time DESC LIMIT %s",
                    [sid, timeframe, n],
                )
                rows = cur.fetchall()
                out[sid] = (
                    np.array([(timeframes.to_ms(_aware(r[0])), *map(float, r[1:])) for r in reversed(rows)])
                    if rows else EMPTY
                )
    return {sid: out.get(sid, EMPTY) for sid in symbol_ids}


def _aware(value):
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def bars(symbol: Symbol, timeframe: str, n: int) -> np.ndarray:
    """The last n bars in `timeframe`, from storage or resampled from the finest stored timeframe."""
    timeframes.seconds(timeframe)
    stored = stored_timeframes(symbol.pk)
    if timeframe in stored:
        return last_bars([symbol.pk], timeframe, n)[symbol.pk]
    source = timeframes.finest_source(timeframe, stored)
    if source is None:
        return EMPTY
    factor = timeframes.seconds(timeframe) // timeframes.seconds(source)
    raw = last_bars([symbol.pk], source, (n + 1) * factor)[symbol.pk]
    return timeframes.resample(raw, source, timeframe)[-n:]
