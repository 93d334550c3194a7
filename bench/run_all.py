"""Run every benchmark against real workers, print markdown tables, optionally rewrite
docs/BENCHMARKS.md (`--write`).

    make bench                                   # DATABASE_URL / REDIS_URL from the Makefile
    BENCH_ISOLATED=1 .venv/bin/python -m bench.run_all --write
    .venv/bin/python -m bench.run_all --quick    # smoke run, small counts

Services: DATABASE_URL / REDIS_URL when both are set, unless BENCH_ISOLATED=1 (or
--isolated), which uses the benchmark's own qt_bench database, Redis db 12 and worker health
ports 18301-18304, so it can run beside `make test`. With neither variable set the isolated
ones are used too.

Phases (one line of progress each): workers up; memory; event bus floors and latency; RPC;
dispatch cost; throughput (publish, then publish_many batches); memory; ops worker with
--concurrency 2; the connection-per-task comparison; workers stopped.

`--write` replaces only what lies between the BEGIN/END markers of docs/BENCHMARKS.md; the
hand-written analysis around them stays.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    MACHINE_BUSY,
    ROOT,
    configure,
    delete_bench_events,
    ensure_database,
    fmt_ms,
    machine_info,
    md_table,
    progress,
    reset_state,
    restart_worker,
    setup_django,
    start_workers,
)

DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN = "<!-- BEGIN GENERATED: bench.run_all --write -->"
END = "<!-- END GENERATED -->"
# Workers with the connection handling of before commit 522e5c0 (a new PostgreSQL session per task).
CONN_PER_TASK_SETTINGS = "bench.settings_conn_per_task"
BATCH = 50  # events per publish_many() call in the batched throughput runs
TYPES = ("market.bar", "platform.probe")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="rewrite the generated part of docs/BENCHMARKS.md")
    ap.add_argument("--isolated", action="store_true", help="same as BENCH_ISOLATED=1")
    ap.add_argument("--quick", action="store_true", help="small counts (smoke run; never written to the doc)")
    ap.add_argument("--ping-n", type=int, default=1000)
    ap.add_argument("--celery-n", type=int, default=500)
    ap.add_argument("--latency-n", type=int, default=300)
    ap.add_argument("--rpc-n", type=int, default=500)
    ap.add_argument("--throughput-n", type=int, default=3000)
    ap.add_argument("--dispatch-n", type=int, default=1000)
    ap.add_argument("--no-batch", action="store_true", help="skip the publish_many throughput runs")
    ap.add_argument("--no-concurrency-2", action="store_true", help="skip the ops --concurrency 2 runs")
    ap.add_argument("--no-comparison", action="store_true",
                    help=f"skip the connection-per-task comparison ({CONN_PER_TASK_SETTINGS})")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy the publisher and every worker child during the concurrency-1 throughput runs "
                         "(py-spy takes CPU too: do not --write a profiled run)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the raw results as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        (args.ping_n, args.celery_n, args.latency_n, args.rpc_n, args.throughput_n,
         args.dispatch_n) = 200, 100, 50, 50, 300, 100
    return args


def _git_state() -> tuple[str, str]:
    """(HEAD as "hash subject", porcelain status of everything but the benchmark's own files)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = git("log", "-1", "--format=%h %s")[:90]
        status = "\n".join(line for line in git("status", "--porcelain").splitlines()
                           if not line[3:].startswith(("bench/", "docs/BENCHMARKS.md")))
        return head, status
    except Exception:
        return "?", ""


def _code_label(start: tuple[str, str], end: tuple[str, str]) -> str:
    if os.environ.get("BENCH_CODE_LABEL"):  # e.g. a `git archive` snapshot, which has no .git
        return os.environ["BENCH_CODE_LABEL"]
    label = start[0]
    if start[1]:
        label += " + uncommitted changes"
    if end != start:
        label += " (WARNING: the code changed during the run; figures may mix versions)"
    return label


def run(args: argparse.Namespace) -> dict:
    from bench import bench_dispatch, bench_event_bus, bench_rpc, bench_worker_memory

    env = configure(force_isolated=args.isolated)
    where = "isolated" if env.isolated else "from the environment"
    progress(f"services ({where}): {env.database_url} | {env.redis_url} | health ports {env.port_base}+")
    ensure_database(env)
    progress("django setup + migrate")
    setup_django(env)
    reset_state(env)
    results: dict = {
        "machine": machine_info(env),
        "code_start": _git_state(),
        "isolated": env.isolated,
        "params": {k: getattr(args, k) for k in ("ping_n", "celery_n", "latency_n", "rpc_n", "throughput_n",
                                                    "dispatch_n")},
        "worker_logs": str(env.log_dir),
    }
    if args.profile:
        from bench import pyspy

        if pyspy.find() is None:
            progress("py-spy not found: profiling skipped (pip install --target /tmp/qt-pyspy py-spy)")
            args.profile = None
    n = args.throughput_n
    ws = None
    t_start = time.monotonic()
    try:
        progress("starting 4 workers (one per queue, --concurrency 1)")
        t = time.monotonic()
        ws = start_workers(env)
        results["workers_ready_seconds"] = time.monotonic() - t
        time.sleep(3)  # heartbeat and health threads up, first beat sent
        progress("worker memory: idle after start")
        results["memory_idle"] = bench_worker_memory.snapshot(ws)

        results["bus"] = bench_event_bus.run_floors_and_latency(env, args.ping_n, args.celery_n, args.latency_n)
        progress(f"event bus (c'): publish -> handled x{args.latency_n}, ops deliveries sent last (bench-side)")
        results["bus"]["publish_latency_ops_last"] = bench_event_bus.publish_latency(env, args.latency_n,
                                                                                    ops_last=True)
        results["rpc"] = bench_rpc.run(args.rpc_n)
        results["dispatch"] = bench_dispatch.run(env, args.dispatch_n)

        results["throughput"] = []
        for etype in TYPES:
            progress(f"event bus (d): throughput {etype} x{n}, publish(), ops --concurrency 1")
            r = bench_event_bus.throughput(env, ws, etype, n, profile_dir=args.profile,
                                           label=f"{etype.replace('.', '_')}-c1")
            r["ops_concurrency"] = 1
            results["throughput"].append(r)
        if not args.no_batch:
            for etype in TYPES:
                progress(f"event bus (d): throughput {etype} x{n}, publish_many() x{BATCH}, ops --concurrency 1")
                r = bench_event_bus.throughput(env, ws, etype, n, batch=BATCH)
                r["ops_concurrency"] = 1
                results["throughput"].append(r)
        progress("worker memory: after the bus benchmark")
        results["memory_after_bus"] = bench_worker_memory.snapshot(ws)

        if not args.no_concurrency_2:
            progress("restarting the ops worker with --concurrency 2")
            restart_worker(ws, "ops", concurrency=2)
            for etype in TYPES:
                progress(f"event bus (d): throughput {etype} x{n}, publish(), ops --concurrency 2")
                r = bench_event_bus.throughput(env, ws, etype, n)
                r["ops_concurrency"] = 2
                results["throughput"].append(r)
            if not args.no_batch:
                for etype in TYPES:
                    progress(f"event bus (d): throughput {etype} x{n}, publish_many() x{BATCH}, ops --concurrency 2")
                    r = bench_event_bus.throughput(env, ws, etype, n, batch=BATCH)
                    r["ops_concurrency"] = 2
                    results["throughput"].append(r)
            results["memory_after_ops_c2"] = bench_worker_memory.snapshot(ws)

        if not args.no_comparison:
            progress(f"comparison: restarting all workers with {CONN_PER_TASK_SETTINGS} (--concurrency 1)")
            ws.stop_all()
            ws = start_workers(env, settings_module=CONN_PER_TASK_SETTINGS)
            cmp_: dict = {"settings": CONN_PER_TASK_SETTINGS}
            progress(f"comparison: bare Celery round trip x{args.celery_n}")
            cmp_["celery_roundtrip"] = bench_event_bus.celery_roundtrip(args.celery_n)
            progress(f"comparison: publish -> handled x{args.latency_n}")
            cmp_["publish_latency"] = bench_event_bus.publish_latency(env, args.latency_n)
            cmp_["throughput"] = []
            for etype in TYPES:
                progress(f"comparison: throughput {etype} x{n}, publish()")
                r = bench_event_bus.throughput(env, ws, etype, n)
                r["ops_concurrency"] = 1
                cmp_["throughput"].append(r)
            results["conn_per_task"] = cmp_
    finally:
        if ws is not None:
            progress("stopping workers")
            ws.stop_all()
        try:
            delete_bench_events()
        except Exception as exc:  # cleanup must not hide the run's own error
            progress(f"cleanup of bench events failed: {exc!r}")
    results["total_seconds"] = time.monotonic() - t_start
    results["code"] = _code_label(results.pop("code_start"), _git_state())
    results["machine"]["load_avg_at_end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.profile:
        from bench import pyspy

        results["profile_summary"] = {}
        for case in results["throughput"]:
            for label, path in case.get("profiles", {}).items():
                results["profile_summary"][label] = pyspy.breakdown(Path(path), top=14)
    return results


# --- rendering ---------------------------------------------------------------------------

LAT_HEADERS = ["measure", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms", "max ms"]


def _lat_row(name: str, s: dict) -> list:
    return [name, s["n"], fmt_ms(s["p50"]), fmt_ms(s["p90"]), fmt_ms(s["p99"]), fmt_ms(s["mean"]), fmt_ms(s["max"])]


def _per(n, d) -> str:
    return "n/a" if n is None or not d else f"{n / d:.2f}"


def _worker_ms(t: dict) -> str:
    pool = sum(v for k, v in t["cpu_seconds"].items() if k.startswith("worker ") and k.endswith(" pool"))
    main = sum(v for k, v in t["cpu_seconds"].items() if k.startswith("worker ") and k.endswith(" main"))
    return f"{pool * 1000 / t['done']:.2f} + {main * 1000 / t['done']:.2f}" if t["done"] else "n/a"


def _busy(t: dict) -> str:
    v = t["cpu_seconds"].get(MACHINE_BUSY)
    return "n/a" if v is None else f"{v / t['cpu_window_seconds']:.0%}"


def _publisher(t: dict) -> str:
    return "publish()" if t.get("batch", 1) <= 1 else f"publish_many() x{t['batch']}"


def _run_label(t: dict, suffix: str = "") -> str:
    b = "" if t.get("batch", 1) <= 1 else f" batch {t['batch']}"
    return f"{t['event_type']}{b} c{t['ops_concurrency']}{suffix}"


def render(res: dict) -> str:
    from bench.bench_event_bus import LATENCY_TARGET_RATIO, THROUGHPUT_TARGET_EPS

    m = res["machine"]
    bus = res["bus"]
    lat = bus["publish_latency"]
    out = []
    services = "isolated services: qt_bench, Redis db 12" if res["isolated"] else "services from the environment"
    out.append(f"Run of **{m['date_utc']}** on code `{res.get('code', '?')}`; {res['total_seconds'] / 60:.1f} min "
               f"with workers up ({services}).")
    out.append("")
    out.append(md_table(["machine", ""], [
        ["CPU", m["cpu_model"]],
        ["cores usable", m["cores"]],
        ["RAM", f"{m['ram_gib']} GiB"],
        ["OS / Python", f"{m['os']} / Python {m['python']}"],
        ["PostgreSQL / Redis", f"{m.get('postgres_server', '?')} / {m.get('redis_server', '?')}"],
        ["libraries", m.get("versions", "?")],
        ["load average (1/5/15 min) at start / end", f"{m['load_avg_at_start']}  /  {m['load_avg_at_end']}"],
        ["counts", ", ".join(f"{k}={v}" for k, v in res["params"].items())],
    ]))
    out.append("")

    # --- targets
    rows = [[
        "publish -> first subscriber handled, p50 / bare Celery round trip p50",
        f"<= {LATENCY_TARGET_RATIO:.0f}x",
        f"{bus['ratio_first_handled_p50_to_celery_p50']:.2f}x "
        f"({fmt_ms(lat['first_handled']['p50'])} / {fmt_ms(bus['celery_roundtrip']['p50'])} ms)",
        "met" if bus["latency_target_met"] else
        f"MISSED by {bus['ratio_first_handled_p50_to_celery_p50'] / LATENCY_TARGET_RATIO - 1:.0%}",
    ]]
    for t in res["throughput"]:
        if t["ops_concurrency"] != 1:
            continue
        ok = t["complete"] and t["events_per_s"] >= THROUGHPUT_TARGET_EPS
        short = "" if ok else f" ({t['events_per_s'] / THROUGHPUT_TARGET_EPS:.0%} of target)"
        rows.append([f"sustained throughput, {t['event_type']} ({t['subscribers']} subscriber(s)), one worker per "
                     f"queue, {_publisher(t)}", f">= {THROUGHPUT_TARGET_EPS:.0f} events/s",
                     f"{t['events_per_s']:.0f} events/s", ("met" if ok else "MISSED") + short])
    out.append("### Targets\n")
    out.append(md_table(["target", "wanted", "measured", "verdict"], rows))
    out.append("")

    # --- latency
    ol = bus.get("publish_latency_ops_last")
    out.append("### Event bus: floors and publish -> handled latency\n")
    out.append("All rows come from the same run, one after the other, with the four workers otherwise idle.\n")
    lrows = [
        _lat_row("(a) Redis PING round trip (redis-py)", bus["redis_ping"]),
        _lat_row("(b) bare Celery round trip: `rpc.execute` ping on ops, `.get()`", bus["celery_roundtrip"]),
        _lat_row("(c) `publish()` call itself (txn + commit + 4 sends)", lat["publish_call"]),
        _lat_row("(c) publish -> first probe subscriber handled", lat["first_handled"]),
        _lat_row(f"(c) publish -> all {lat['probe_subscribers']} probe subscribers handled",
                 lat["all_probes_handled"]),
    ]
    if ol:
        lrows.append(_lat_row("(c') publish -> first probe handled, ops delivery sent last (bench-side reorder)",
                              ol["first_handled"]))
    out.append(md_table(LAT_HEADERS, lrows))
    out.append("")
    out.append("Where (c) goes (same events; the sends timed by a bench-side wrapper around `bus.send_delivery`):\n")
    out.append(md_table(LAT_HEADERS, [
        _lat_row("publish start -> commit (validate, INSERT event + deliveries, COMMIT)", lat["until_commit"]),
        _lat_row("publish start -> first probe message sent (after the observer's)", lat["until_first_probe_sent"]),
        _lat_row("first probe message sent -> handled (broker + worker)", lat["first_probe_sent_to_handled"]),
    ]))
    out.append("")
    out.append("- Ratio publish -> first handled / bare Celery: p50 "
               f"**{bus['ratio_first_handled_p50_to_celery_p50']:.2f}x**, "
               f"p99 {bus['ratio_first_handled_p99_to_celery_p99']:.2f}x.")
    if ol:
        out.append(f"- Same with the ops delivery sent last (c'): p50 "
                   f"{ol['first_handled']['p50'] / bus['celery_roundtrip']['p50']:.2f}x.")
    out.append("- Ratio first probe message sent -> handled / bare Celery: p50 "
               f"{lat['first_probe_sent_to_handled']['p50'] / bus['celery_roundtrip']['p50']:.2f}x.")
    out.append(f"- Bare Celery / Redis PING p50: {bus['celery_roundtrip']['p50'] / bus['redis_ping']['p50']:.0f}x.")
    out.append(f"- Events whose probes did not all arrive within 10 s: {lat['timeouts']}.")
    out.append("")

    # --- throughput
    out.append("### Event bus: sustained throughput\n")
    out.append("N events published back to back by one publisher (this process, autocommit); elapsed = first "
               "publish -> last delivery's `processed_at`. Worker CPU = pool children + main processes, all four "
               "workers, per delivery.\n")
    tp_rows = []
    for t in res["throughput"]:
        tp_rows.append([
            t["event_type"], t["subscribers"], _publisher(t), t["ops_concurrency"], t["events"],
            f"{t['publish_events_per_s']:.0f}", f"{t['elapsed_seconds']:.1f}", f"**{t['events_per_s']:.0f}**",
            f"{t['deliveries_per_s']:.0f}",
            "yes" if t["complete"] else f"NO ({t['done']}/{t['expected_deliveries']})",
            _per(t.get("db_sessions_opened"), t["done"]), _worker_ms(t), _busy(t),
        ])
    out.append(md_table(["event type", "subscribers", "published with", "ops concurrency", "events",
                         "publish-only events/s", "elapsed s", "events/s end to end", "deliveries/s", "all DONE",
                         "new PG sessions / delivery", "worker CPU ms / delivery (pool + main)",
                         "machine busy (200% = 2 cores)"], tp_rows))
    out.append("")
    q_rows = []
    for t in res["throughput"]:
        for q, v in sorted(t["per_queue"].items()):
            q_rows.append([_run_label(t), q, v["deliveries"], f"{v['finished_after_s']:.1f}",
                           f"{v['deliveries_per_s']:.0f}"])
    out.append("Per queue (when each queue's last delivery was DONE):\n")
    out.append(md_table(["run", "queue", "deliveries", "last DONE after s", "deliveries/s"], q_rows))
    out.append("")

    cmp_ = res.get("conn_per_task")
    runs = [(_run_label(t), t) for t in res["throughput"]]
    if cmp_:
        runs += [(_run_label(t, " conn/task"), t) for t in cmp_["throughput"]]
    out.append("CPU seconds used during each throughput run (user+system). PostgreSQL includes backends that exited "
               "during the run; PostgreSQL and Redis are shared with anything else on the machine. `%` = CPU s / "
               f"run wall time, so 100% is one core busy; this machine has {m['cores']} cores "
               f"({m['cores'] * 100}%):\n")
    groups = list(runs[0][1]["cpu_seconds"].keys())
    cpu_rows = []
    for g in groups:
        row = [g]
        for _, t in runs:
            v = t["cpu_seconds"].get(g, 0.0)
            row.append(f"{v:.1f} s ({v / t['cpu_window_seconds']:.0%})")
        cpu_rows.append(row)
    if MACHINE_BUSY in groups:
        total_row, other_row = ["sum of the rows above"], ["other processes (machine - sum: other users)"]
        for _, t in runs:
            mine = sum(x for k, x in t["cpu_seconds"].items() if k != MACHINE_BUSY)
            other = t["cpu_seconds"][MACHINE_BUSY] - mine
            total_row.append(f"{mine:.1f} s ({mine / t['cpu_window_seconds']:.0%})")
            other_row.append(f"{other:.1f} s ({other / t['cpu_window_seconds']:.0%})")
        cpu_rows.insert(len(cpu_rows) - 1, total_row)
        cpu_rows.append(other_row)
    out.append(md_table(["process"] + [label for label, _ in runs], cpu_rows))
    out.append("")

    # --- connection per task
    if cmp_:
        out.append("### Comparison: a new PostgreSQL connection per task (workers as before 522e5c0)\n")
        out.append(f"Same run: all four workers restarted with `{cmp_['settings']}` (the current settings with "
                   "`CELERY_DB_REUSE_MAX = None`, so Celery's Django fix-up closes the connection around every "
                   "task); publisher unchanged.\n")
        cl = cmp_["publish_latency"]
        crt = cmp_["celery_roundtrip"]
        rows = [
            ["bare Celery round trip p50 / p99 ms",
             f"{fmt_ms(bus['celery_roundtrip']['p50'])} / {fmt_ms(bus['celery_roundtrip']['p99'])}",
             f"{fmt_ms(crt['p50'])} / {fmt_ms(crt['p99'])}"],
            ["`publish()` call p50 / p99 ms",
             f"{fmt_ms(lat['publish_call']['p50'])} / {fmt_ms(lat['publish_call']['p99'])}",
             f"{fmt_ms(cl['publish_call']['p50'])} / {fmt_ms(cl['publish_call']['p99'])}"],
            ["publish start -> commit p50 ms", fmt_ms(lat["until_commit"]["p50"]), fmt_ms(cl["until_commit"]["p50"])],
            ["publish start -> first probe message sent p50 ms", fmt_ms(lat["until_first_probe_sent"]["p50"]),
             fmt_ms(cl["until_first_probe_sent"]["p50"])],
            ["first probe message sent -> handled p50 ms", fmt_ms(lat["first_probe_sent_to_handled"]["p50"]),
             fmt_ms(cl["first_probe_sent_to_handled"]["p50"])],
            ["publish -> first probe handled p50 / p99 ms",
             f"{fmt_ms(lat['first_handled']['p50'])} / {fmt_ms(lat['first_handled']['p99'])}",
             f"{fmt_ms(cl['first_handled']['p50'])} / {fmt_ms(cl['first_handled']['p99'])}"],
            ["ratio publish -> first handled / bare Celery (p50)",
             f"{bus['ratio_first_handled_p50_to_celery_p50']:.2f}x", f"{cl['first_handled']['p50'] / crt['p50']:.2f}x"],
        ]
        base = {(t["event_type"], t["ops_concurrency"], t.get("batch", 1)): t for t in res["throughput"]}
        for t in cmp_["throughput"]:
            b = base.get((t["event_type"], t["ops_concurrency"], t.get("batch", 1)))
            if b is None:
                continue
            tag = f"{t['event_type']}:"
            rows += [
                [f"{tag} events/s (deliveries/s)", f"**{b['events_per_s']:.0f}** ({b['deliveries_per_s']:.0f})",
                 f"{t['events_per_s']:.0f} ({t['deliveries_per_s']:.0f})"],
                [f"{tag} publish-only events/s", f"{b['publish_events_per_s']:.0f}",
                 f"{t['publish_events_per_s']:.0f}"],
                [f"{tag} new PostgreSQL sessions per delivery", _per(b.get("db_sessions_opened"), b["done"]),
                 _per(t.get("db_sessions_opened"), t["done"])],
                [f"{tag} worker CPU ms per delivery (pool + main)", _worker_ms(b), _worker_ms(t)],
                [f"{tag} machine busy", _busy(b), _busy(t)],
            ]
        out.append(md_table(["measure", "current (connection kept)", "connection per task"], rows))
        out.append("")

    # --- RPC
    out.append("### RPC: `qtweb.rpc.call(service, \"ping\")`\n")
    out.append(md_table(LAT_HEADERS, [_lat_row(f"`{svc}` ping", s) for svc, s in res["rpc"].items()]))
    out.append("")
    out.append(f"- Same run's bare Celery round trip p50: {fmt_ms(bus['celery_roundtrip']['p50'])} ms; "
               "`rpc.call` adds argument checks, `expires`, `forget()` and metrics on top.")
    out.append("")

    # --- dispatch
    out.append("### Dispatch cost on the publisher (4 delivery messages = one `platform.probe` event)\n")
    out.append("To a queue nobody consumes; per event, i.e. per 4 messages, workers idle.\n")
    first = next(iter(res["dispatch"].values()))["p50"]
    out.append(md_table(LAT_HEADERS + ["p50 vs current"], [
        [*_lat_row(name, s), f"{s['p50'] / first:.0%}"] for name, s in res["dispatch"].items()
    ]))
    out.append("")

    # --- memory
    out.append("### Worker memory (main process + prefork children, MiB)\n")
    snaps = [("idle after start", res["memory_idle"]), ("after the bus benchmark", res["memory_after_bus"])]
    if "memory_after_ops_c2" in res:
        snaps.append(("after the ops --concurrency 2 runs", res["memory_after_ops_c2"]))
    mem_rows = []
    for node in res["memory_idle"]:
        row = [node]
        for _, snap in snaps:
            s = snap.get(node)
            row.append("n/a" if s is None else
                       f"{s['rss_total_mib']:.0f} (main {s['rss_main_mib']:.0f} + {s['processes'] - 1} child "
                       f"{s['rss_children_mib']:.0f}); PSS {s.get('pss_total_mib', math.nan):.0f}; "
                       f"USS {s['uss_total_mib']:.0f}")
        mem_rows.append(row)
    total_row = ["all four"]
    for _, snap in snaps:
        total_row.append(f"{sum(s['rss_total_mib'] for s in snap.values()):.0f}; "
                         f"PSS {sum(s.get('pss_total_mib', math.nan) for s in snap.values()):.0f}; "
                         f"USS {sum(s['uss_total_mib'] for s in snap.values()):.0f}")
    mem_rows.append(total_row)
    out.append(md_table(["worker"] + [name for name, _ in snaps], mem_rows))
    out.append("")
    out.append("RSS counts the pages a worker's main process shares with its forked child in both; PSS splits "
               "shared pages between their sharers (the fair physical figure); USS (private pages only) is the "
               "lower bound of what stopping the worker frees. Pages shared after fork turn private as the "
               "processes touch them (copy-on-write), so PSS/USS rise with a worker's age at a near-constant RSS.")
    if res.get("profile_summary"):
        out.append("")
        out.append("### py-spy profiles (share of samples with the function on the stack, below the focus frame)\n")
        for label, p in res["profile_summary"].items():
            if not p["samples"] or not p["focus"]:
                continue
            top = ", ".join(f"{name} {share:.0%}" for name, share in p["top"][:12])
            out.append(f"- **{label}** ({p['samples']} samples; `{p['focus']}` {p['focus_share']:.0%}): {top}")
    return "\n".join(out)


def write_doc(section: str) -> None:
    block = f"{BEGIN}\n{section}\n{END}"
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(head + block + tail)
            return
        DOC.write_text(text.rstrip() + "\n\n## Results\n\n" + block + "\n")
        return
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("# Benchmarks\n\nCommand: `make bench` or `.venv/bin/python -m bench.run_all --write`.\n\n"
                   "## Results\n\n" + block + "\n")


def _jsonable(o):
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    return o


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    section = render(res)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(_jsonable(res), indent=2, default=str))
        progress(f"raw results: {args.json}")
    if args.write:
        if args.quick or args.profile:
            progress("--quick or --profile results are not written to docs/BENCHMARKS.md")
        else:
            write_doc(section)
            progress(f"wrote {DOC.relative_to(ROOT)}")
    progress(f"done in {res['total_seconds']:.0f}s with workers up; worker logs: {res['worker_logs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
