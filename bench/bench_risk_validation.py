"""How long the pure pre-trade validator takes per intent (risk/domain/rules.py).

A realistic book (10 positions across 6 sectors, 5 open orders), one entry intent that passes
every rule and one that fails several; validate() timed call by call. Baselines in the same run:
a trivial function call and building the Snapshot dataclass alone (what every caller pays anyway).

    .venv/bin/python -m bench.bench_risk_validation [--calls N]

No Django: it imports only risk.domain (and not bench.common, which sets Django up).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from risk.domain.policy import Policy
from risk.domain.rules import Exposure, Intent, OpenOrder, Snapshot, validate

D = Decimal
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
RECENT_KEYS = frozenset(f"sig-{i}" for i in range(50))  # intent keys seen in the dedupe window

SECTORS = {
    "BTC/USDT": "store-of-value", "ETH/USDT": "smart-contract", "SOL/USDT": "smart-contract",
    "ADA/USDT": "smart-contract", "UNI/USDT": "defi", "AAVE/USDT": "defi", "LINK/USDT": "oracle",
    "DOGE/USDT": "meme", "PEPE/USDT": "meme", "ARB/USDT": "layer2", "OP/USDT": "layer2",
}


def build_policy() -> Policy:
    return Policy.from_values({
        "max_open_positions": 15, "max_position_usd": "20000", "max_total_exposure_pct": "400",
        "sector_exposure_pct": {"meme": "30", "store-of-value": "150", "smart-contract": "150"},
        "symbol_denylist": ["LUNA/USDT"],
    })


def build_book() -> tuple[tuple[Exposure, ...], tuple[OpenOrder, ...]]:
    held = [("BTC/USDT", "long", "8000"), ("ETH/USDT", "long", "5200.37"), ("SOL/USDT", "short", "2100.5"),
            ("ADA/USDT", "long", "900"), ("UNI/USDT", "long", "1500.25"), ("AAVE/USDT", "short", "1200"),
            ("LINK/USDT", "long", "1750.8"), ("DOGE/USDT", "long", "600"), ("PEPE/USDT", "short", "350.12"),
            ("ARB/USDT", "long", "1100")]
    positions = tuple(Exposure(sym, side, D(n), SECTORS[sym]) for sym, side, n in held)
    orders = (("ETH/USDT", "buy", "1000", False), ("OP/USDT", "buy", "800", False),
              ("BTC/USDT", "sell", "2000", True), ("LINK/USDT", "buy", "500", False),
              ("DOGE/USDT", "sell", "600", True))
    open_orders = tuple(OpenOrder(sym, side, D(n), ro, SECTORS[sym]) for sym, side, n, ro in orders)
    return positions, open_orders


def build_snapshot(intent: Intent, policy: Policy, positions, open_orders) -> Snapshot:
    return Snapshot(
        policy=policy, mode="NORMAL", equity_usd=D("25000"), day_start_equity_usd=D("25800"),
        positions=positions, open_orders=open_orders, intent=intent, reference_price=D("3050.12"),
        reference_price_age_seconds=2.5, orders_last_minute=4,
        recent_intent_keys=RECENT_KEYS, entries_blocked_until=None, now=NOW)


def time_calls(fn: Callable[[], object], calls: int) -> list[float]:
    """Per-call wall time in microseconds."""
    clock = time.perf_counter_ns
    out = [0.0] * calls
    for i in range(calls):
        t0 = clock()
        fn()
        out[i] = (clock() - t0) / 1000.0
    return out


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    n = len(s)
    return {"p50": s[n // 2], "p99": s[min(n - 1, int(n * 0.99))], "mean": statistics.fmean(s), "max": s[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args(argv)
    calls = args.calls

    policy = build_policy()
    positions, open_orders = build_book()
    ok_intent = Intent(symbol="ETH/USDT", side="buy", size_usd=D("1500"), leverage=5, confidence=D("0.72"),
                       intent_key="sig-new", sector=SECTORS["ETH/USDT"], price=D("3055"))
    bad_intent = Intent(symbol="PEPE/USDT", side="buy", size_usd=D("9000"), leverage=50, confidence=D("0.4"),
                        intent_key="sig-7", sector=SECTORS["PEPE/USDT"], price=D("3300"))
    ok = build_snapshot(ok_intent, policy, positions, open_orders)
    bad = build_snapshot(bad_intent, policy, positions, open_orders)
    v_ok, v_bad = validate(ok), validate(bad)
    assert v_ok.approved, v_ok.reason
    assert not v_bad.approved and len(v_bad.reasons) >= 4, v_bad.reasons

    def noop() -> None:
        return None

    cases: list[tuple[str, Callable[[], object]]] = [
        ("trivial function call", noop),
        ("build Snapshot only", lambda: build_snapshot(ok_intent, policy, positions, open_orders)),
        ("validate (approved)", lambda: validate(ok)),
        (f"validate (rejected, {len(v_bad.reasons)} reasons)", lambda: validate(bad)),
    ]
    for _, fn in cases:  # warm up
        time_calls(fn, min(2000, calls))
    results = {name: summary(time_calls(fn, calls)) for name, fn in cases}

    print(f"risk validator benchmark: {calls} calls each; Python {platform.python_version()} on "
          f"{platform.machine()}; book {len(positions)} positions / {len(set(SECTORS[p.symbol] for p in positions))} "
          f"sectors / {len(open_orders)} open orders")
    print()
    print("| case | p50 µs | p99 µs | mean µs | max µs |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['mean']:.2f} | {r['max']:.1f} |")
    print()
    approved = results["validate (approved)"]
    snap = results["build Snapshot only"]
    noop_r = results["trivial function call"]
    print(f"summary: validate() p50 {approved['p50']:.1f} µs, p99 {approved['p99']:.1f} µs, "
          f"mean {approved['mean']:.1f} µs per intent = {approved['p50'] / snap['p50']:.1f}x building the Snapshot "
          f"({snap['p50']:.1f} µs), {approved['p50'] / max(noop_r['p50'], 1e-9):.0f}x a trivial call "
          f"({noop_r['p50']:.2f} µs incl. timer); budget 1000 µs p50: "
          f"{'OK' if approved['p50'] <= 1000 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
