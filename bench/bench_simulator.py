"""Market simulator benchmark: bars generated per second (pure model), seed_history rows/s and
advance() latency on PostgreSQL.

    .venv/bin/python -m bench.bench_simulator              # 60 days; the database part in qt_bench_sim
    .venv/bin/python -m bench.bench_simulator --no-db      # the pure model only
    .venv/bin/python -m bench.bench_simulator --quick

The database part uses its own database (qt_bench_sim, created if missing; BENCH_SIM_DATABASE_URL
overrides it) and a simulator named "bench", so it can run beside the test suite and the
other benchmarks. It replaces the paper symbols' 5m candles in that database.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from urllib.parse import urlparse

from bench.common import md_table, progress, setup_standalone

DATABASE_URL = os.environ.get("BENCH_SIM_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/qt_bench_sim")
REDIS_URL = "redis://127.0.0.1:6379/12"
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def bench_model(days: int, repeats: int) -> list[tuple]:
    from trading.simulator.model import BARS_PER_DAY, MarketSimulator
    from trading.simulator.universe import demo_config

    config = demo_config(START_MS)
    n_symbols = len(config.assets)
    rows = []
    for label, n_bars, calls in (
        (f"{days} days in one call", days * BARS_PER_DAY, 1),
        ("1 day in one call", BARS_PER_DAY, 1),
        ("1 bar per call (live), 288 calls", 1, BARS_PER_DAY),
    ):
        times = []
        for _ in range(repeats):
            sim = MarketSimulator(config, 42)
            t0 = time.perf_counter()
            for _ in range(calls):
                sim.generate(n_bars)
            times.append(time.perf_counter() - t0)
        best, med = min(times), statistics.median(times)
        symbol_bars = n_bars * calls * n_symbols
        rows.append((label, n_symbols, f"{symbol_bars:,}", f"{med * 1000:,.1f}", f"{symbol_bars / med:,.0f}",
                     f"{symbol_bars / best:,.0f}"))
        progress(f"model: {label}: {symbol_bars / med:,.0f} symbol-bars/s (median of {repeats})")
    return rows




def bench_db(days: int, advances: int) -> list[tuple]:
    setup_standalone(DATABASE_URL, REDIS_URL)
    from trading.simulator import service
    from trading.simulator.model import BAR_MS

    now = START_MS + 60_000
    progress(f"db: seed_history({days} days) into {urlparse(DATABASE_URL).path.strip('/')}")
    res = service.seed_history(days=days, seed=42, force=True, name="bench", now_ms=now, speed_factor=1.0,
                               show_progress=True)
    rows = [("seed_history", f"{days} days x {res.symbols} symbols", f"{res.rows:,}", f"{res.seconds:,.1f} s",
             f"{res.rows / res.seconds:,.0f} rows/s")]
    progress(f"db: {res.rows:,} rows in {res.seconds:.1f} s")
    lat = []
    for i in range(advances):
        t0 = time.perf_counter()
        out = service.advance(name="bench", now_ms=now + (i + 1) * BAR_MS, speed_factor=1.0)
        lat.append(time.perf_counter() - t0)
        assert out.bars_per_symbol == 1
    lat_ms = sorted(x * 1000 for x in lat)
    p50 = statistics.median(lat_ms)
    p90 = lat_ms[int(0.9 * (len(lat_ms) - 1))]
    rows.append(("advance(): 1 bar for every symbol, stored with the state", f"{advances} calls",
                 f"{advances * res.symbols:,}", f"p50 {p50:.1f} ms, p90 {p90:.1f} ms",
                 f"{res.symbols / (p50 / 1000):,.0f} rows/s"))
    progress(f"db: advance p50 {p50:.1f} ms")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_simulator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--advances", type=int, default=50)
    ap.add_argument("--no-db", action="store_true")
    ap.add_argument("--quick", action="store_true", help="5 days, 1 repeat, 10 advances")
    args = ap.parse_args(argv)
    if args.quick:
        args.days, args.repeats, args.advances = 5, 1, 10
    model_rows = bench_model(args.days, args.repeats)
    print("\n### Market simulator: generation (pure model)\n")
    print(md_table(["run", "symbols", "symbol-bars", "median ms", "symbol-bars/s (median)", "symbol-bars/s (best)"],
                   model_rows))
    if not args.no_db:
        db_rows = bench_db(args.days, args.advances)
        print("\n### Market simulator: PostgreSQL\n")
        print(md_table(["operation", "size", "candle rows", "time", "throughput"], db_rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
