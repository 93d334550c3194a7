"""Signal -> order acknowledged, through real Redis, Celery workers and the paper exchange.

    .venv/bin/python -m bench.bench_execution            # 200 signals
    .venv/bin/python -m bench.bench_execution --quick    # 40

What is timed, per signal: `publish(signal.generated)` in this process (the clock starts just
before it) -> the inference worker sizes it (ai.sizing.size_signal: Kelly and the PPO agent if
one is trained; none is in this database, so Kelly only) -> `rl.decision` -> the execution
worker builds the intent, validates it (risk snapshot: policy, mode, balance, positions, open
orders, reference price, order rate) and sends a market order -> the paper exchange fills it
-> `Order.acknowledged_at` is stamped when its answer is applied. Latency = acknowledged_at -
start (same machine, same clock). Signals alternate BUY and SELL on three perpetuals, so a BUY
opens a position and the SELL closes it (a reduce-only exit): every signal makes one order.
Splits: publish -> rl.decision published (the inference hop and sizing), rl.decision ->
acknowledged (the execution hop, risk and the exchange).

Baselines in the same run: the bare Celery round trip to the ops worker and to the execution
worker (qtweb.rpc.execute "ping", result awaited). Targets: p50 <= 20 ms, p99 <= 100 ms.

Own services: database qt_bench_exec (created if missing, its trading/risk/event tables
emptied), Redis db 13, worker health ports 18401-18404.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from bench.common import md_table, progress, summarize, time_calls

DATABASE_URL = os.environ.get("BENCH_EXEC_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/qt_bench_exec")
REDIS_URL = "redis://127.0.0.1:6379/13"
PORT_BASE = "18400"
TARGET_P50_MS, TARGET_P99_MS = 20.0, 100.0
SYMBOLS = ("ETH/USDT:USDT", "BTC/USDT:USDT", "DOGE/USDT:USDT")


def _setup():
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["QT_TEST_PORT_BASE"] = PORT_BASE
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from bench.common import setup_standalone

    setup_standalone(DATABASE_URL, REDIS_URL)
    import redis
    from django.db import connection

    redis.Redis.from_url(REDIS_URL).flushdb()  # db 13 is this benchmark's
    with connection.cursor() as cur:
        cur.execute("TRUNCATE trading_symbol, trading_paperaccount, risk_riskpolicy, risk_modechange, "
                    "risk_riskdecision, risk_dailyequity, risk_governorstate, qtweb_event CASCADE")


def _celery_roundtrip(queue: str, service: str, n: int) -> dict:
    from qtweb.rpc.tasks import execute

    def once():
        res = execute.apply_async(args=(service, "ping", {}), queue=queue)
        assert res.get(timeout=10).get("ok")
        res.forget()

    return summarize(time_calls(once, n, warmup=10))


def _signal(symbol: str, action: str) -> dict:
    return {"symbol": symbol, "timeframe": "5m", "action": action, "confidence": 0.85,
            "score": 0.7 if action == "BUY" else -0.7, "ensemble_agreement": 1.0, "models_voted": 4,
            "model_versions": {"xgboost": "1"}}


def run(n: int) -> dict:
    from django.db import close_old_connections

    from qtweb.events.bus import publish
    from qtweb.events.models import Event
    from risk.services.policy import policy_update
    from tests.support.execution import build_market
    from trading.marketdata.reference import mark_feed_ok
    from trading.models import Order

    progress("building the paper market (4 symbols x 300 bars, 100k USDT)")
    build_market()
    # The benchmark sends far more orders per minute than the default throttle allows, and its
    # open-close round trips lose their fees every time (the governor would go REDUCE_ONLY after 5).
    policy_update(changes={"max_orders_per_minute": 100000, "emergency_consecutive_losses": 100000},
                  updated_by="bench", reason="benchmark load")
    from tests.support.workers import WorkerSet

    ws = WorkerSet(DATABASE_URL, REDIS_URL, __import__("pathlib").Path("/tmp"))
    for q in ("inference", "execution", "learning", "ops"):
        ws.start(q)
    try:
        ws.wait_ready(timeout=120)
        progress("workers up; baselines")
        floor_ops = _celery_roundtrip("ops", "analytics-os-service", 200)
        floor_exec = _celery_roundtrip("execution", "exec-risk-service", 200)
        total, inference_hop, execution_hop = [], [], []
        warmup = 10
        progress(f"{n} signals (+{warmup} warm-up), one at a time")
        for i in range(n + warmup):
            if i % 20 == 0:
                mark_feed_ok("paper")
            symbol = SYMBOLS[(i // 2) % len(SYMBOLS)]
            action = "BUY" if i % 2 == 0 else "SELL"
            trace = f"bench-exec-{i:05d}-{time.time_ns() % 10**9}"
            t0 = time.time()
            publish("signal.generated", _signal(symbol, action), trace_id=trace)
            deadline = time.monotonic() + 20
            order = None
            while time.monotonic() < deadline:
                order = Order.objects.filter(trace_id=trace, acknowledged_at__isnull=False).only(
                    "acknowledged_at").first()
                if order is not None:
                    break
                time.sleep(0.001)
            if order is None:
                raise RuntimeError(f"signal {i} ({symbol} {action}) produced no acknowledged order in 20 s")
            decided = Event.objects.filter(trace_id=trace, type="rl.decision").values_list("timestamp", flat=True)[0]
            if i >= warmup:
                total.append(order.acknowledged_at.timestamp() - t0)
                inference_hop.append(decided.timestamp() - t0)
                execution_hop.append(order.acknowledged_at.timestamp() - decided.timestamp())
            time.sleep(0.02)  # let the position.opened/closed fan-out drain between signals
            close_old_connections()
            if (i + 1) % 50 == 0:
                progress(f"{i + 1}/{n + warmup} signals")
    finally:
        ws.stop_all()
    return {"floor_ops": floor_ops, "floor_exec": floor_exec, "total": summarize(total),
            "inference_hop": summarize(inference_hop), "execution_hop": summarize(execution_hop)}


def phases(n: int = 20) -> tuple[dict, float, float]:
    """In this process, without workers: where the execution side's time goes per intent
    (intent_from_rl_decision + intent_process on the paper exchange), and SQL statements."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import risk.domain.rules as rules
    import risk.services.validation as validation
    import trading.execution.orders as orders
    import trading.execution.services as services
    import trading.execution.services.sources as sources
    from qtweb.events.bus import publish
    from qtweb.events.schemas import build_envelope
    from trading.exchanges.account import use_gateway
    from trading.exchanges.paper import PaperGateway
    from trading.marketdata.reference import mark_feed_ok

    spent: dict[str, float] = {}

    def timed(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, wrapper)

    gw = PaperGateway("default")
    use_gateway(gw)
    orders.reset_reconciled()
    mark_feed_ok("paper")
    timed(sources, "intent_from_rl_decision", "intent from rl.decision (symbol, position, insert)")
    timed(validation, "snapshot_build", "risk snapshot (balance, positions, open orders, counts)")
    timed(rules, "validate", "pure validation")
    timed(gw, "create_order", "paper exchange create_order")
    timed(orders, "order_apply", "booking the answer (fill, position, events and their dispatch)")

    def one(i: int) -> float:
        action = "BUY" if i % 2 == 0 else "SELL"
        trace = f"bench-phase-{i}-{time.time_ns() % 10**9}"
        signal = publish("signal.generated", _signal("ETH/USDT:USDT", action), trace_id=trace)
        decision = build_envelope("rl.decision", {"symbol": "ETH/USDT:USDT", "action": action, "agent_action": 0.5,
                                                  "signal_event_id": signal.event_id,
                                                  "confidence": signal.data().confidence,
                                                  "kelly_fraction": 0.2, "final_size_usd": "3000",
                                                  "agent_trained": False, "reason": "bench"},
                                  trace_id=trace, source="ai-service")
        t0 = time.perf_counter()
        intent = sources.intent_from_rl_decision(decision)
        services.intent_process(intent.pk, intent=intent)
        return time.perf_counter() - t0

    for i in range(6):
        one(i)
    spent.clear()
    total = 0.0
    with CaptureQueriesContext(connection) as q:
        for i in range(n):
            total += one(100 + i)
    return ({k: v / n * 1000 for k, v in spent.items()}, total / n * 1000, len(q.captured_queries) / n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_execution", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    _setup()
    r = run(40 if args.quick else 200)
    rows = [
        ("bare Celery round trip (ops worker)", r["floor_ops"]),
        ("bare Celery round trip (execution worker)", r["floor_exec"]),
        ("signal.generated -> order acknowledged", r["total"]),
        ("  of which publish -> rl.decision (inference hop + sizing)", r["inference_hop"]),
        ("  of which rl.decision -> acknowledged (execution hop + risk + exchange)", r["execution_hop"]),
    ]
    print(md_table(["path", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"],
                   [(name, s["n"], s["p50"], s["p90"], s["p99"], s["max"]) for name, s in rows]))
    t = r["total"]
    ratio = t["p50"] / r["floor_exec"]["p50"]
    by_phase, per_intent, statements = phases()
    print(f"\nexecution side in process: {per_intent:.1f} ms and {statements:.0f} SQL statements per intent")
    print(md_table(["phase", "ms per intent"], sorted(by_phase.items(), key=lambda kv: -kv[1])))
    print(f"\np50 {t['p50']:.2f} ms (target {TARGET_P50_MS:.0f}: {'met' if t['p50'] <= TARGET_P50_MS else 'MISSED'}), "
          f"p99 {t['p99']:.2f} ms (target {TARGET_P99_MS:.0f}: {'met' if t['p99'] <= TARGET_P99_MS else 'MISSED'}); "
          f"{ratio:.1f}x the bare Celery round trip to the execution worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
