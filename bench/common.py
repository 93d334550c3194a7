"""What every benchmark shares: environment and Django setup, real workers, statistics,
machine facts, progress lines and markdown tables.

Call `configure()` before anything imports Django settings or tests.support.workers (the
worker health ports are read from QT_TEST_PORT_BASE at import time).
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]

# The benchmark's own services, so it can run beside `make test` on the same machine.
ISOLATED_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/qt_bench"
ISOLATED_REDIS_URL = "redis://127.0.0.1:6379/12"
ISOLATED_PORT_BASE = "18300"

# Every event the benchmarks publish carries a trace id with this prefix, so their rows can
# be counted and removed without touching anything else in a shared database.
TRACE_PREFIX = "bench-"

_T0 = time.monotonic()


# --- progress ----------------------------------------------------------------------------


def progress(msg: str) -> None:
    """One line per phase on stderr (runs take minutes)."""
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --- environment -------------------------------------------------------------------------


@dataclass
class BenchEnv:
    database_url: str
    redis_url: str
    isolated: bool
    port_base: str
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="qt-bench-logs-")))

    @property
    def redis_db(self) -> int:
        path = urlparse(self.redis_url).path.strip("/")
        return int(path or 0)

    @property
    def database_name(self) -> str:
        return urlparse(self.database_url).path.strip("/")


def configure(force_isolated: bool = False) -> BenchEnv:
    """Choose the services: the isolated ones (qt_bench, Redis db 12, ports 183xx) when
    BENCH_ISOLATED=1, when asked, or when DATABASE_URL / REDIS_URL are not both set (someone
    running the module by hand); otherwise the DATABASE_URL / REDIS_URL given (make bench)."""
    isolated = (
        force_isolated
        or os.environ.get("BENCH_ISOLATED") == "1"
        or not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
    )
    if isolated:
        os.environ["DATABASE_URL"] = ISOLATED_DATABASE_URL
        os.environ["REDIS_URL"] = ISOLATED_REDIS_URL
        os.environ["QT_TEST_PORT_BASE"] = ISOLATED_PORT_BASE
    else:
        os.environ.setdefault("QT_TEST_PORT_BASE", ISOLATED_PORT_BASE)
    os.environ["DJANGO_SETTINGS_MODULE"] = "qtweb.settings.test"  # installs the probe subscribers
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # this process keeps its metrics in memory
    return BenchEnv(
        database_url=os.environ["DATABASE_URL"],
        redis_url=os.environ["REDIS_URL"],
        isolated=isolated,
        port_base=os.environ["QT_TEST_PORT_BASE"],
    )


def ensure_database(env: BenchEnv) -> None:
    """`createdb` the isolated database; "already exists" is fine."""
    if not env.isolated:
        return
    u = urlparse(env.database_url)
    cmd = ["createdb", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres",
           env.database_name]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        progress("createdb not found; assuming the database exists")
        return
    if out.returncode != 0 and "already exists" not in out.stderr:
        raise RuntimeError(f"createdb failed: {out.stderr.strip()}")


def setup_django(env: BenchEnv) -> None:
    """django.setup(), then migrate the benchmark database."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def reset_state(env: BenchEnv) -> None:
    """Before workers start: remove earlier benchmark rows (and, in the isolated database,
    every event row: it is ours) and flush the isolated Redis db. Never FLUSHALL."""
    import redis
    from django.db import connection

    from qtweb.events.models import Event, EventDelivery

    if env.isolated:
        with connection.cursor() as cur:
            cur.execute(f"TRUNCATE {EventDelivery._meta.db_table}, {Event._meta.db_table}")
        redis.Redis.from_url(env.redis_url).flushdb()  # db 12 only
    else:
        delete_bench_events()


def delete_bench_events() -> int:
    from qtweb.events.models import Event, EventDelivery

    EventDelivery.objects.filter(event__trace_id__startswith=TRACE_PREFIX).delete()
    n, _ = Event.objects.filter(trace_id__startswith=TRACE_PREFIX).delete()
    return n


def bench_trace_id(kind: str) -> str:
    return f"{TRACE_PREFIX}{kind}-{uuid.uuid4().hex[:20]}"


# --- workers -----------------------------------------------------------------------------


def start_workers(env: BenchEnv, concurrency: dict[str, int] | None = None, timeout: float = 120,
                  settings_module: str | None = None):
    """A WorkerSet with one real `celery worker` per queue against the benchmark database,
    answering RPC ping. The caller must `stop_all()` it (in a finally). `settings_module`
    replaces qtweb.settings.test in the workers (bench experiments only)."""
    from tests.support.workers import QUEUES, WorkerSet

    concurrency = concurrency or {}
    extra = {"DJANGO_SETTINGS_MODULE": settings_module} if settings_module else None
    ws = WorkerSet(env.database_url, env.redis_url, env.log_dir, extra_env=extra)
    try:
        for q in QUEUES:
            ws.start(q, concurrency=concurrency.get(q, 1))
        ws.wait_ready(timeout=timeout)
    except BaseException:
        ws.stop_all()
        raise
    return ws


def db_sessions() -> int | None:
    """Sessions ever opened on this database (pg_stat_database.sessions, PostgreSQL >= 14)."""
    from django.db import connection

    try:
        with connection.cursor() as cur:
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            row = cur.fetchone()
        return int(row[0]) if row else None
    except Exception:
        return None


def restart_worker(ws, queue: str, concurrency: int, timeout: float = 120) -> None:
    ws.stop(f"{queue}@test")
    ws.start(queue, concurrency=concurrency)
    ws.wait_ready(timeout=timeout)


# --- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), p in [0, 100]."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return s[lo]
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(seconds: Iterable[float]) -> dict:
    """Latency summary in milliseconds."""
    ms = [x * 1000.0 for x in seconds]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": sum(ms) / len(ms) if ms else math.nan,
        "min": min(ms) if ms else math.nan,
        "max": max(ms) if ms else math.nan,
    }


def time_calls(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# --- CPU accounting (what dominates a run) ------------------------------------------------


def cpu_seconds_by_group(worker_pids: dict[str, int]) -> dict[str, float]:
    """User+system CPU seconds consumed so far by: this process, each worker's main process
    and its pool children, every postgres process, redis-server. Postgres and Redis are shared with
    whatever else runs on the machine, so their share is an upper bound."""
    import psutil

    def cpu(procs) -> float:
        total = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def children(p) -> list:
        try:
            return p.children(recursive=True)
        except psutil.Error:
            return []

    # this process only: the workers and any py-spy are its children and are counted apart
    out = {"bench process (publisher)": cpu([psutil.Process()])}
    for node, pid in worker_pids.items():
        try:
            main = psutil.Process(pid)
        except psutil.Error:
            continue
        out[f"worker {node} main"] = cpu([main])
        out[f"worker {node} pool"] = cpu(children(main))
    pg = rd = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        name = p.info.get("name") or ""
        t = p.info.get("cpu_times")
        if t is None:
            continue
        if name.startswith("postgres"):
            # + reaped children: the postmaster collects the CPU of backends that exited, i.e. of
            # the short-lived sessions a worker opens per task
            pg += t.user + t.system + t.children_user + t.children_system
        elif name.startswith("redis-server"):
            rd += t.user + t.system
    out["postgres (all backends, incl. exited)"] = pg
    out["redis-server"] = rd
    sys_t = psutil.cpu_times()
    busy = sum(sys_t) - sys_t.idle - getattr(sys_t, "iowait", 0.0)
    out[MACHINE_BUSY] = busy
    return out


# Whole-machine busy CPU seconds (every process, including whatever else runs on the machine).
MACHINE_BUSY = "whole machine (all processes)"


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: max(after.get(k, 0.0) - v, 0.0) for k, v in before.items()}


# --- machine -----------------------------------------------------------------------------


def machine_info(env: BenchEnv | None = None) -> dict:
    import psutil

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    info = {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": model,
        "cores": usable,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_avg_at_start": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    try:
        import celery
        import django
        import kombu
        import redis

        info["versions"] = (f"Django {django.get_version()}, Celery {celery.__version__}, kombu {kombu.__version__}, "
                            f"redis-py {redis.__version__}")
    except Exception:
        pass
    if env is not None:
        try:
            import redis as _redis

            info["redis_server"] = _redis.Redis.from_url(env.redis_url).info("server").get("redis_version", "?")
        except Exception:
            info["redis_server"] = "?"
        try:
            from django.db import connection

            with connection.cursor() as cur:
                cur.execute("SHOW server_version")
                info["postgres_server"] = cur.fetchone()[0].split()[0]
        except Exception:
            info["postgres_server"] = "?"
    return info


# --- markdown ----------------------------------------------------------------------------


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "n/a"
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_ms(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def setup_standalone(database_url: str, redis_url: str = ISOLATED_REDIS_URL) -> None:
    """For benchmarks that need Django but no workers: create the database if missing, point
    the test settings at it, set Django up and migrate."""
    u = urlparse(database_url)
    out = subprocess.run(["createdb", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U",
                          u.username or "postgres", u.path.strip("/")], capture_output=True, text=True)
    if out.returncode != 0 and "already exists" not in out.stderr:
        raise RuntimeError(f"createdb failed: {out.stderr.strip()}")
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("REDIS_URL", redis_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "qtweb.settings.test"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
