"""Worker memory: RSS of each `celery worker` (main process + prefork pool children).

RSS counts pages shared between the main process and its forked children once per process,
so the sum overstates physical memory. PSS (each shared page split between its sharers) is
the fair physical figure; USS (pages private to each process) is the lower bound of what
stopping the worker would give back. Shared pages become private as the processes touch
them (copy-on-write after fork: reference counts, garbage collection), so PSS and USS grow
with a worker's age even when RSS does not.
"""
from __future__ import annotations

MIB = 2**20


def snapshot(ws) -> dict[str, dict]:
    import psutil

    out = {}
    for node, proc in sorted(ws.procs.items()):
        main = psutil.Process(proc.pid)
        children = main.children(recursive=True)
        rss_main = main.memory_info().rss
        rss_children = 0
        uss = pss = 0
        for p in [main, *children]:
            try:
                if p is not main:
                    rss_children += p.memory_info().rss
                full = p.memory_full_info()
                uss += full.uss
                pss += getattr(full, "pss", 0)
            except psutil.Error:
                pass
        out[node] = {
            "processes": 1 + len(children),
            "rss_main_mib": rss_main / MIB,
            "rss_children_mib": rss_children / MIB,
            "rss_total_mib": (rss_main + rss_children) / MIB,
            "uss_total_mib": uss / MIB,
            "pss_total_mib": pss / MIB,
        }
    return out
