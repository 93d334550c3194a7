"""Bulk candle ingestion: upsert rows [open_time_ms, open, high, low, close, volume].

On PostgreSQL rows go through COPY into a temporary table and one INSERT ... ON CONFLICT
(the fast path, see docs/BENCHMARKS.md); elsewhere through bulk_create with update_conflicts.
A bar already stored is overwritten (the live bar of the current period changes until it
closes; a re-import corrects data).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.db import connection, transaction

from core.decimals import to_decimal
from trading.marketdata import timeframes
from trading.models import Candle, Symbol

# Rows per bulk_create statement on the generic path (SQLite's variable limit is 32766:
# 7 columns x 2000 rows stays well under it).
BULK_BATCH_ROWS = 2000


@dataclass(frozen=True)
class IngestResult:
    symbol: str
    timeframe: str
    rows: int


def _validate(rows: np.ndarray, symbol: Symbol, timeframe: str) -> np.ndarray:
    arr = np.asarray(rows, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"{symbol.symbol}: expected rows of [open_time_ms, open, high, low, close, volume], "
                         f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{symbol.symbol}: NaN or infinite values in OHLCV")
    step = timeframes.milliseconds(timeframe)
    misaligned = arr[:, 0] % step != 0
    if misaligned.any():
        raise ValueError(f"{symbol.symbol} {timeframe}: open_time not aligned to the timeframe at row "
                         f"{int(np.flatnonzero(misaligned)[0])}")
    _, first_index, counts = np.unique(arr[:, 0], return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(sorted(first_index[counts > 1])[0])
        raise ValueError(f"{symbol.symbol} {timeframe}: open_time of row {dup} appears more than once")
    o, h, lo, c, v = arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5]
    bad = (lo <= 0) | (h < np.maximum(o, c)) | (np.minimum(o, c) < lo) | (v < 0)
    if bad.any():
        raise ValueError(f"{symbol.symbol}: inconsistent OHLCV at row {int(np.flatnonzero(bad)[0])} "
                         "(need high >= max(open, close) >= min(open, close) >= low > 0, volume >= 0)")
    return arr


def ingest(symbol: Symbol, timeframe: str, rows: Sequence | np.ndarray) -> IngestResult:
    """Upsert candles for one symbol and timeframe, atomically. Raises ValueError naming the
    first bad row (nothing written) for misaligned times, NaNs or inconsistent OHLC."""
    timeframes.seconds(timeframe)
    arr = _validate(rows, symbol, timeframe)
    if len(arr) == 0:
        return IngestResult(symbol.symbol, timeframe, 0)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _copy_upsert(symbol.pk, timeframe, arr)
        else:
            _bulk_upsert(symbol, timeframe, arr)
    return IngestResult(symbol.symbol, timeframe, len(arr))


def _decimal_text(x: float) -> str:
    # repr() of a float is the shortest string that round-trips: no binary noise in NUMERIC.
    return repr(float(x))


def _copy_upsert(symbol_id: int, timeframe: str, arr: np.ndarray) -> None:
    table = Candle._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candle_stage (open_time timestamptz, open numeric, high numeric, "
            "low numeric, close numeric, volume numeric) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE candle_stage")  # ON COMMIT clears it too, but not inside a savepoint
        raw = cur.cursor  # psycopg3 cursor underneath Django's wrapper
        with raw.copy("COPY candle_stage (open_time, open, high, low, close, volume) FROM STDIN") as copy:
            for t, o, h, lo, c, v in arr:
                copy.write_row((datetime.fromtimestamp(t / 1000, tz=UTC), _decimal_text(o), _decimal_text(h),
                                _decimal_text(lo), _decimal_text(c), _decimal_text(v)))
        cur.execute(
            f"INSERT INTO {table} (symbol_id, timeframe, open_time, open, high, low, close, volume) "
            "SELECT %s, %s, open_time, open, high, low, close, volume FROM candle_stage "
            "ON CONFLICT (symbol_id, timeframe, open_time) DO UPDATE SET open = EXCLUDED.open, "
            "high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume",
            [symbol_id, timeframe],
        )


def _bulk_upsert(symbol: Symbol, timeframe: str, arr: np.ndarray) -> None:
    objs = [
        Candle(symbol=symbol, timeframe=timeframe, open_time=datetime.fromtimestamp(t / 1000, tz=UTC),
               open=to_decimal(o, "open"), high=to_decimal(h, "high"), low=to_decimal(lo, "low"),
               close=to_decimal(c, "close"), volume=to_decimal(v, "volume"))
        for t, o, h, lo, c, v in arr
    ]
    Candle.objects.bulk_create(
        objs, batch_size=BULK_BATCH_ROWS, update_conflicts=True,
        unique_fields=["symbol", "timeframe", "open_time"], update_fields=["open", "high", "low", "close", "volume"],
    )
