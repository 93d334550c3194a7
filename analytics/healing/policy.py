"""Self-healing decisions (pure): a health graph and what self-healing remembers in, actions out.

What it heals:
- a queue with no live worker, or whose oldest message ages while its worker beats (stuck):
  restart that worker;
- a worker whose memory passed the threshold: restart its pool (and the whole worker if its
  pool was restarted within the cooldown and memory is still over);
- a model that failed `model_failures` votes in a row: quarantine it (the ensemble goes on with
  the others); one that self-healing quarantined and that answered `model_recoveries` times in a
  row since: release it;
- execution CRITICAL for longer than `reduce_only_after_seconds`: REDUCE_ONLY through the risk
  service while it lasts; back to the mode before
  once it is HEALTHY again, only when the operator allowed that (SELF_HEALING_AUTO_RESUME).

Cooldowns and the restart-loop guard are applied by the service (analytics/healing/service.py),
which knows the history; this module only says what the graph calls for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from core.enums import Mode

HEALTHY, DEGRADED, CRITICAL, DISABLED = "HEALTHY", "DEGRADED", "CRITICAL", "DISABLED"
EXECUTION_SERVICE = "exec-risk-service"
AI_SERVICE = "ai-service"


@dataclass(frozen=True)
class Decision:
    kind: str  # analytics.models.HealingKind value
    target: str
    trigger: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Memory:
    """What the service knows beyond the graph."""

    mode: str  # the system mode now
    reduce_only_by_healing: bool = False  # the current REDUCE_ONLY is self-healing's own
    mode_before_healing: str | None = None  # the mode self-healing left when it entered REDUCE_ONLY
    quarantined_by_healing: frozenset[str] = frozenset()  # model types self-healing quarantined
    quarantined: frozenset[str] = frozenset()  # every quarantined champion type, whoever quarantined it
    pool_restarted_ago: dict[str, float] = field(default_factory=dict)  # worker -> seconds since its pool restart
    execution_critical_seconds: float | None = None  # how long exec-risk-service has been CRITICAL


def decide(graph: dict, memory: Memory, *, memory_threshold_pct: float, model_failures: int,
           model_recoveries: int, auto_resume: bool, reduce_only_after_seconds: float = 30.0,
           settle_seconds: float = 60.0) -> list[Decision]:
    """`settle_seconds`: after a pool restart, memory readings this recent may predate it; only a
    reading after that, still over, escalates to a whole-worker restart (until 3x that, when a
    new pool restart is due instead)."""
    out: list[Decision] = []
    for name, q in sorted(graph.get("queues", {}).items()):
        if q.get("enabled", True) and q["status"] == CRITICAL:
            out.append(Decision("restart_worker", name, q["reasons"][0] if q["reasons"] else "queue CRITICAL",
                                {"queue": name, "reasons": q["reasons"], "workers": q.get("workers", []),
                                 "oldest_age_seconds": q.get("oldest_age_seconds"),
                                 "heartbeat_age_seconds": q.get("heartbeat_age_seconds")}))
    critical_queues = {d.target for d in out}
    for name, w in sorted(graph.get("workers", {}).items()):
        mem = w.get("memory_percent")
        if w.get("shut_down") or w["queue"] in critical_queues or not isinstance(mem, int | float):
            continue
        if mem > memory_threshold_pct:
            facts = {"worker": name, "queue": w["queue"], "memory_percent": mem, "threshold_pct": memory_threshold_pct,
                     "rss_mb": w.get("rss_mb"), "pid": w.get("pid")}
            ago = memory.pool_restarted_ago.get(name)
            if ago is not None and ago < settle_seconds:
                continue  # its pool was just restarted: wait for a reading taken after that
            if ago is not None and ago < 3 * settle_seconds:
                out.append(Decision("restart_worker", w["queue"], f"memory {mem:.1f}% > {memory_threshold_pct:g}% "
                                    f"of {name} {ago:.0f}s after its pool was restarted", facts))
            else:
                out.append(Decision("restart_pool", name, f"memory {mem:.1f}% > {memory_threshold_pct:g}% of {name}",
                                    facts))
    ai = graph.get("services", {}).get(AI_SERVICE, {})
    for module, report in sorted((ai.get("modules") or {}).items()):
        if not module.startswith("model:"):
            continue
        model_type = module.removeprefix("model:")
        failing = int(report.get("failure_streak") or 0)
        answering = int(report.get("answer_streak") or 0)
        facts = {"model_type": model_type, "model_version_id": report.get("model_version_id"),
                 "failure_streak": failing, "answer_streak": answering, "error": report.get("error", "")}
        if failing >= model_failures and not report.get("quarantined") and model_type not in memory.quarantined:
            out.append(Decision("quarantine_model", model_type, f"failed {failing} votes in a row: "
                                f"{report.get('error') or report.get('reason', '')}"[:500], facts))
        elif model_type in memory.quarantined_by_healing and answering >= model_recoveries:
            out.append(Decision("release_model", model_type, f"answered {answering} votes in a row since", facts))
    execution = graph.get("services", {}).get(EXECUTION_SERVICE, {})
    status = execution.get("status")
    # Not on a blip: a worker that self-healing brings back within seconds, or one still starting
    # with the rest of the system, is not "execution unhealthy".
    critical_for = memory.execution_critical_seconds
    lasting = critical_for is not None and critical_for >= reduce_only_after_seconds
    if status == CRITICAL and lasting and memory.mode in (Mode.NORMAL.value, Mode.SHADOW.value):
        out.append(Decision("reduce_only", "mode", f"exec-risk-service CRITICAL: "
                            f"{'; '.join(execution.get('reasons', [])) or 'down'}"[:500],
                            {"previous_mode": memory.mode, "reasons": execution.get("reasons", []),
                             "critical_for_seconds": memory.execution_critical_seconds}))
    elif status == HEALTHY and memory.mode == Mode.REDUCE_ONLY.value and memory.reduce_only_by_healing:
        target = memory.mode_before_healing or Mode.NORMAL.value
        out.append(Decision("restore_mode", "mode", "exec-risk-service HEALTHY again",
                            {"restore_to": target, "allowed": auto_resume}))
    return out
