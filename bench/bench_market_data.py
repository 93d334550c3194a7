"""Market data benchmark: candle ingestion rows/s and "last 500 bars for 50 symbols" on PostgreSQL.

    .venv/bin/python -m bench.bench_market_data [--days 60] [--reads 200]

Uses its own database (qt_bench_md; BENCH_MD_DATABASE_URL overrides), so it can run beside the
tests. Baselines in the same run: ingestion through Django's bulk_create (the generic path) and
the read as one ORM query per symbol.
"""
from __future__ import annotations

import argparse
import os
import time
from decimal import Decimal

import numpy as np

from bench.common import md_table, percentile, progress, setup_standalone

DATABASE_URL = os.environ.get("BENCH_MD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/qt_bench_md")
START_MS = 1_767_225_600_000
M5 = 300_000
N_SYMBOLS = 50




def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.002, n))), 4)
    open_ = np.r_[100.0, close[:-1]]
    high = np.round(np.maximum(open_, close) * 1.0005, 4)
    low = np.round(np.minimum(open_, close) * 0.9995, 4)
    vol = np.round(rng.uniform(1, 1000, n), 3)
    return np.column_stack([START_MS + M5 * np.arange(n), open_, high, low, close, vol])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    setup_standalone(DATABASE_URL)
    from django.db import connection, transaction

    from trading.marketdata import ingest as ingest_mod
    from trading.marketdata.selectors import last_bars
    from trading.models import Candle, Symbol

    Candle.objects.filter(symbol__exchange="bench").delete()
    Symbol.objects.filter(exchange="bench").delete()
    symbols = [Symbol.objects.create(exchange="bench", symbol=f"B{i:02d}/USDT", base=f"B{i:02d}", quote="USDT",
                                     tick_size=Decimal("0.0001"), lot_size=Decimal("0.001")) for i in range(N_SYMBOLS)]
    n = args.days * 288
    progress(f"ingest: {N_SYMBOLS} symbols x {n} bars via COPY upsert")
    t0 = time.perf_counter()
    for i, s in enumerate(symbols):
        ingest_mod.ingest(s, "5m", _rows(n, i))
    copy_s = time.perf_counter() - t0
    total = N_SYMBOLS * n

    # Baseline in the same run: the generic bulk_create path, on a fresh timeframe so it inserts.
    base_n = min(n, 5 * 288)
    progress(f"baseline: bulk_create of {N_SYMBOLS // 5} symbols x {base_n} bars")
    t0 = time.perf_counter()
    for i, s in enumerate(symbols[: N_SYMBOLS // 5]):
        with transaction.atomic():
            ingest_mod._bulk_upsert(s, "15m", _rows(base_n, i))  # 5m-spaced times: fine for a write test
    bulk_s = time.perf_counter() - t0
    bulk_rows = (N_SYMBOLS // 5) * base_n
    Candle.objects.filter(symbol__exchange="bench", timeframe="15m").delete()

    with connection.cursor() as cur:
        cur.execute("ANALYZE trading_candle")
    ids = [s.pk for s in symbols]
    progress(f"read: last 500 bars x {N_SYMBOLS} symbols, {args.reads} times")
    lateral = []
    for _ in range(args.reads):
        t0 = time.perf_counter()
        out = last_bars(ids, "5m", 500)
        lateral.append(time.perf_counter() - t0)
    assert all(len(v) == 500 for v in out.values())
    orm = []
    for _ in range(max(20, args.reads // 10)):
        t0 = time.perf_counter()
        for sid in ids:
            list(Candle.objects.filter(symbol_id=sid, timeframe="5m").order_by("-open_time")
                 .values_list("open_time", "open", "high", "low", "close", "volume")[:500])
        orm.append(time.perf_counter() - t0)

    def ms(v, p):
        return f"{percentile(v, p) * 1000:.1f}"

    print(md_table(["measure", "rows", "seconds", "rows/s"], [
        ("ingest, COPY + INSERT ON CONFLICT (production path)", f"{total:,}", f"{copy_s:.1f}",
         f"{total / copy_s:,.0f}"),
        ("ingest, bulk_create update_conflicts (generic path, baseline)", f"{bulk_rows:,}", f"{bulk_s:.1f}",
         f"{bulk_rows / bulk_s:,.0f}"),
    ]))
    print()
    print(md_table(["read: last 500 bars x 50 symbols (25,000 rows)", "n", "p50 ms", "p99 ms"], [
        ("one LATERAL query, float64 arrays (production path)", len(lateral), ms(lateral, 50), ms(lateral, 99)),
        ("one ORM query per symbol, Decimals (baseline)", len(orm), ms(orm, 50), ms(orm, 99)),
    ]))
    print(f"\nratio ORM / LATERAL p50: {percentile(orm, 50) / percentile(lateral, 50):.1f}x; "
          f"COPY / bulk_create rows/s: {(total / copy_s) / (bulk_rows / bulk_s):.1f}x")
    Candle.objects.filter(symbol__exchange="bench").delete()
    Symbol.objects.filter(exchange="bench").delete()


if __name__ == "__main__":
    main()
