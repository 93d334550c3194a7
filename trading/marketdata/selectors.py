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
            # One round trip; LATERAL walks each symbol's unique index backwards, LIMIT n. The
            # rows come back as a binary COPY of seven float8 columns, decoded by numpy in one
            # go: building 25,000 Python tuples instead cost most of the read (BENCHMARKS.md).
            query = (
                f"COPY (SELECT s.id::float8, (extract(epoch FROM c.open_time) * 1000)::float8, c.open::float8, "
                f"c.high::float8, c.low::float8, c.close::float8, c.volume::float8 "
                f"FROM unnest(%s::bigint[]) AS s(id) CROSS JOIN LATERAL (SELECT open_time, open, high, low, close, "
                f"volume FROM {table} WHERE symbol_id = s.id AND timeframe = %s ORDER BY open_time DESC LIMIT %s) c"
                f") TO STDOUT (FORMAT binary)"
            )
            with cur.cursor.copy(query, [list(symbol_ids), timeframe, n]) as copy:
                payload = b"".join(bytes(block) for block in copy)
            data = _decode_binary_float8(payload, columns=7)
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


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _decode_binary_float8(payload: bytes, columns: int) -> np.ndarray:
    """Rows of a PostgreSQL binary COPY whose columns are all non-null float8."""
    if not payload.startswith(_COPY_SIGNATURE):
        raise ValueError("not a PostgreSQL binary COPY stream")
    ext = int.from_bytes(payload[15:19], "big")
    body = payload[19 + ext:-2]  # header (+ extension), then tuples, then the -1 trailer
    row = np.dtype([("n", ">i2")] + [(f"f{i}", [("len", ">i4"), ("v", ">f8")]) for i in range(columns)])
    if len(body) % row.itemsize:
        raise ValueError("binary COPY stream with NULLs or unexpected column types")
    rec = np.frombuffer(body, dtype=row)
    if len(rec) and ((rec["n"] != columns).any() or any((rec[f"f{i}"]["len"] != 8).any() for i in range(columns))):
        raise ValueError("binary COPY stream with NULLs or unexpected column types")
    return np.column_stack([rec[f"f{i}"]["v"].astype(float) for i in range(columns)]) if len(rec) else np.empty(
        (0, columns))


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
