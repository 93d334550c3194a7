"""Paper exchange benchmark: `create_order` (market) -> filled, in process, on PostgreSQL.

    .venv/bin/python -m bench.bench_paper_exchange           # 2000 orders per case
    .venv/bin/python -m bench.bench_paper_exchange --quick   # 200

One call is what a strategy pays: PaperGateway.create_order() returning the filled order as a
ccxt dict — validation, the market statistics read (last 48 bars), the account lock, the fill,
the order/trade/balance/position writes and the commit. Cases: spot market orders (buy and
sell alternate so the balances stay put), the same with a clientOrderId (one more query: the
open-order duplicate check), and perpetual market orders at 10x (open, then close).

It uses its own database (qt_bench_paper, created if missing; BENCH_PAPER_DATABASE_URL
overrides it) and replaces the paper tables there, so it can run beside the test suite and
the other benchmarks. Target: p50 <= 2 ms.
"""
from __future__ import annotations

import argparse
import os
import sys

from bench.common import md_table, progress, setup_standalone, summarize, time_calls

DATABASE_URL = os.environ.get("BENCH_PAPER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/qt_bench_paper")
REDIS_URL = "redis://127.0.0.1:6379/12"
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
N_BARS = 500
TARGET_P50_MS = 2.0




def _fixtures():
    from decimal import Decimal

    import numpy as np

    from trading.exchanges.paper import create_account
    from trading.marketdata.ingest import ingest
    from trading.models import (
        Candle,
        MarketType,
        PaperAccount,
        PaperFunding,
        PaperOrder,
        PaperPosition,
        PaperTrade,
        Symbol,
    )

    PaperFunding.objects.all().delete()
    PaperTrade.objects.all().delete()
    PaperOrder.objects.all().delete()
    PaperPosition.objects.all().delete()
    PaperAccount.objects.all().delete()
    Candle.objects.filter(symbol__exchange="paper", symbol__symbol__in=["BENCH/USDT", "BENCH/USDT:USDT"]).delete()
    Symbol.objects.filter(exchange="paper", symbol__in=["BENCH/USDT", "BENCH/USDT:USDT"]).delete()
    spot = Symbol.objects.create(exchange="paper", symbol="BENCH/USDT", base="BENCH", quote="USDT",
                                 tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_notional=Decimal("5"))
    perp = Symbol.objects.create(exchange="paper", symbol="BENCH/USDT:USDT", base="BENCH", quote="USDT",
                                 settle="USDT", market_type=MarketType.PERPETUAL, tick_size=Decimal("0.1"),
                                 lot_size=Decimal("0.001"), min_notional=Decimal("5"))
    rng = np.random.default_rng(1)
    close = np.round(30000 * np.exp(np.cumsum(rng.normal(0, 0.002, N_BARS))), 1)
    open_ = np.r_[30000.0, close[:-1]]
    rows = np.column_stack([START_MS + 300_000 * np.arange(N_BARS), open_, np.maximum(open_, close) + 5,
                            np.minimum(open_, close) - 5, close, rng.uniform(20, 60, N_BARS).round(3)])
    ingest(spot, "5m", rows)
    ingest(perp, "5m", rows)
    create_account("bench", {"USDT": "10000000", "BENCH": "100"})


def round_trips(fn) -> int:
    """Round trips to PostgreSQL during fn(), counted as calls of psycopg's Connection.wait:
    one per statement or batch sent and answered, BEGIN and COMMIT included (restoring
    autocommit after the transaction counts one more that may not touch the network)."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    original = raw.wait
    count = [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    raw.wait = counting
    try:
        fn()
    finally:
        del raw.wait
    return count[0]


def run(n: int) -> list[tuple]:
    from trading.exchanges.paper import PaperGateway

    _fixtures()
    gw = PaperGateway("bench")
    gw.set_leverage(10, "BENCH/USDT:USDT")
    counter = {"i": 0}

    def spot():
        counter["i"] += 1
        o = gw.create_order("BENCH/USDT", "market", "buy" if counter["i"] % 2 else "sell", 0.01)
        assert o["status"] == "closed"

    def spot_cid():
        counter["i"] += 1
        o = gw.create_order("BENCH/USDT", "market", "buy" if counter["i"] % 2 else "sell", 0.01,
                            params={"clientOrderId": f"b-{counter['i']}"})
        assert o["status"] == "closed"

    def perp():
        counter["i"] += 1
        o = gw.create_order("BENCH/USDT:USDT", "market", "buy" if counter["i"] % 2 else "sell", 0.01)
        assert o["status"] == "closed"

    out = []
    for label, fn in (("spot market order", spot), ("spot market order with clientOrderId", spot_cid),
                      ("perpetual market order, 10x (open / close)", perp)):
        counter["i"] = 0
        progress(f"{label}: {n} calls")
        s = summarize(time_calls(fn, n, warmup=50))
        trips = round_trips(fn)  # a warm call, as timed
        out.append((label, n, trips, s["p50"], s["p90"], s["p99"], s["max"]))
        progress(f"{label}: p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_paper_exchange", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="timed calls per case")
    ap.add_argument("--quick", action="store_true", help="200 calls per case")
    args = ap.parse_args(argv)
    setup_standalone(DATABASE_URL, REDIS_URL)
    rows = run(200 if args.quick else args.n)
    print(f"\n### Paper exchange: create_order (market) -> filled, in process (target p50 <= {TARGET_P50_MS} ms)\n")
    print(md_table(["case", "calls", "round trips per call", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
