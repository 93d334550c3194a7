"""Reading candle files (CSV, Parquet): row-level validation that names every bad row.

Columns (README "Importing candles"): `open_time` (ISO 8601 with a timezone, or epoch
milliseconds), `open`, `high`, `low`, `close`, `volume`, and optionally `symbol` and
`timeframe` (otherwise given on the command line). Bad rows are reported and skipped; the
good ones are grouped per (symbol, timeframe) for ingestion.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np

from core.decimals import to_decimal
from core.enums import MarketType
from qtweb.events.schemas import SYMBOL_PATTERN
from trading.marketdata import timeframes

REQUIRED = ("open_time", "open", "high", "low", "close", "volume")


@dataclass
class ParsedFile:
    groups: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    gaps: list[tuple[str, str, int, int]] = field(default_factory=list)  # symbol, tf, from_ms, to_ms (missing)
    rows_read: int = 0

    @property
    def rows_ok(self) -> int:
        return sum(len(a) for a in self.groups.values())


def read_table(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False), 2  # data starts on line 2
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path), 1
    raise ValueError(f"{path.name}: unsupported file type {suffix!r}; use .csv or .parquet")


def _parse_time(value) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("open_time has no timezone")
        return timeframes.to_ms(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"open_time {text!r} is neither ISO 8601 nor epoch milliseconds") from None
    if dt.tzinfo is None:
        raise ValueError(f"open_time {text!r} has no timezone (write e.g. 2026-01-01T00:00:00Z)")
    return timeframes.to_ms(dt)


def _number(row, name: str) -> float:
    raw = row[name]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} is {raw!r}")
    return value


def parse(path: Path, *, symbol: str | None, timeframe: str | None) -> ParsedFile:
    table, first_row_number = read_table(path)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED)}")
    if symbol is None and "symbol" not in table.columns:
        raise ValueError(f"{path.name}: no symbol column and no --symbol given")
    if timeframe is None and "timeframe" not in table.columns:
        raise ValueError(f"{path.name}: no timeframe column and no --timeframe given")
    if timeframe is not None:
        timeframes.seconds(timeframe)

    out = ParsedFile(rows_read=len(table))
    rows_by_group: dict[tuple[str, str], dict[int, tuple]] = defaultdict(dict)
    for i, row in enumerate(table.to_dict("records")):
        n = i + first_row_number
        try:
            sym = str(row.get("symbol") or symbol or "").strip()
            tf = str(row.get("timeframe") or timeframe or "").strip()
            if not sym:
                raise ValueError("symbol is empty")
            timeframes.seconds(tf)
            t = _parse_time(row["open_time"])
            if t % timeframes.milliseconds(tf):
                raise ValueError(f"open_time {timeframes.to_datetime(t).isoformat()} is not on the {tf} grid")
            o, h, lo, c, v = (_number(row, k) for k in ("open", "high", "low", "close", "volume"))
            if not (h >= max(o, c) and min(o, c) >= lo > 0):
                raise ValueError("inconsistent OHLC (need high >= max(open, close) >= min(open, close) >= low > 0)")
            if v < 0:
                raise ValueError("volume is negative")
        except Exception as exc:  # every bad row is reported, none stops the file
            out.problems.append((n, str(exc)))
            continue
        group = rows_by_group[(sym, tf)]
        if t in group:
            when = f"{timeframes.to_datetime(t):%Y-%m-%d %H:%M}Z"
            out.problems.append((n, f"duplicate of row {group[t][0]} ({sym} {tf} {when})"))
            continue
        group[t] = (n, (t, o, h, lo, c, v))

    for key, rows in rows_by_group.items():
        arr = np.array([r for _, r in sorted(rows.values(), key=lambda x: x[1][0])], dtype=float)
        out.groups[key] = arr
        step = timeframes.milliseconds(key[1])
        jumps = np.flatnonzero(np.diff(arr[:, 0]) > step)
        for j in jumps:
            out.gaps.append((key[0], key[1], int(arr[j, 0] + step), int(arr[j + 1, 0] - step)))
    out.problems.sort()
    return out


# --- creating the symbols a file introduces ---------------------------------------------------

# Inferred increments are powers of ten from 10**-8 to 1. Finer than 10**-8 is float noise
# (a Parquet price of 0.30000000000000004), not a real tick; coarser than 1 would read a tick
# into round numbers (a file of prices 93500, 93600 does not prove a tick of 100).
FINEST_EXPONENT, COARSEST_EXPONENT = -8, 0


@dataclass(frozen=True)
class UnifiedSymbol:
    symbol: str
    base: str
    quote: str
    settle: str
    market_type: MarketType


def parse_unified_symbol(symbol: str) -> UnifiedSymbol:
    """BTC/USDT -> spot, BTC/USDT:USDT -> perpetual settled in USDT. ValueError with the reason
    for anything else (the same pattern the Symbol model and the event schemas accept)."""
    if not re.match(SYMBOL_PATTERN, symbol):
        raise ValueError(f"{symbol!r} is not a unified symbol like BTC/USDT (spot) or BTC/USDT:USDT (perpetual): "
                         "BASE/QUOTE[:SETTLE] in upper-case letters and digits")
    pair, _, settle = symbol.partition(":")
    base, quote = pair.split("/")
    return UnifiedSymbol(symbol, base, quote, settle, MarketType.PERPETUAL if settle else MarketType.SPOT)


@dataclass(frozen=True)
class Increment:
    value: Decimal
    samples: int  # how many non-zero values it was inferred from (0: none, the finest was taken)


def infer_increment(values) -> Increment:
    """The largest power of ten dividing every value (zeros ignored), from 10**-8 to 1.

    Prices 93500.1, 93620, 93480.5 -> 0.1. Values are rounded to 8 decimals first, so binary
    noise in floats does not make the increment absurdly fine; with no non-zero value the
    finest increment is returned (samples 0) rather than a guess.
    """
    arr = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(arr).all():
        raise ValueError("values must be finite numbers")
    nonzero = np.unique(np.abs(arr[arr != 0]))
    if len(nonzero) == 0:
        return Increment(Decimal(1).scaleb(FINEST_EXPONENT), 0)
    exponent = COARSEST_EXPONENT
    with localcontext() as ctx:
        ctx.prec = 60  # rounding a volume of 1e20 to 8 decimals needs more than the default 28 digits
        for x in nonzero:
            d = round(to_decimal(float(x), "value"), -FINEST_EXPONENT).normalize()
            if d == 0:  # below 10**-8 altogether: only the finest increment can hold it
                exponent = FINEST_EXPONENT
                break
            exponent = min(exponent, d.as_tuple().exponent)
            if exponent <= FINEST_EXPONENT:
                break
    return Increment(Decimal(1).scaleb(max(exponent, FINEST_EXPONENT)), int((arr != 0).sum()))
