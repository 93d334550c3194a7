"""RPC benchmark: `qtweb.rpc.call(service, "ping")` round trips, as a caller sees them.

One call = apply_async to the service's queue (with `expires`), result `.get()`, `forget()`,
reply unwrapping and metrics; default timeout and retries, so a retried call shows up in p99.
"""
from __future__ import annotations

from bench.common import progress, summarize, time_calls

SERVICES = ("analytics", "ai", "exec-risk")


def run(n: int = 500) -> dict:
    from qtweb import rpc

    out = {}
    for svc in SERVICES:
        progress(f"rpc: call({svc!r}, 'ping') x{n}")
        out[svc] = summarize(time_calls(lambda svc=svc: rpc.call(svc, "ping"), n, warmup=20))
    return out
