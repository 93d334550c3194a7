"""Self-healing decisions (pure): a graph and what self-healing remembers in, actions out."""
from __future__ import annotations

import pytest

from analytics.healing.policy import Memory, decide


def graph(*, queues=None, workers=None, models=None, execution="HEALTHY"):
    return {
        "queues": queues or {},
        "workers": workers or {},
        "services": {"ai-service": {"status": "HEALTHY", "modules": models or {}},
                     "exec-risk-service": {"status": execution, "reasons": ["execution: no heartbeat within 15s"]}},
    }


def run(g, memory=None, **kw):
    opts = {"memory_threshold_pct": 85.0, "model_failures": 3, "model_recoveries": 3, "auto_resume": False,
            "reduce_only_after_seconds": 30.0, **kw}
    return [(d.kind, d.target) for d in decide(g, memory or Memory(mode="NORMAL"), **opts)]


@pytest.mark.parametrize(("status", "enabled", "expected"), [
    ("CRITICAL", True, [("restart_worker", "inference")]),
    ("HEALTHY", True, []),
    ("DEGRADED", True, []),
    ("CRITICAL", False, []),  # a switched-off service is not healed
])
def test_a_critical_queue_restarts_its_worker(status, enabled, expected):
    g = graph(queues={"inference": {"status": status, "reasons": ["no heartbeat within 15s"], "enabled": enabled}})
    assert run(g) == expected


@pytest.mark.parametrize(("mem", "pool_ago", "expected"), [
    (84.9, None, []),
    (85.0, None, []),
    (85.1, None, [("restart_pool", "inference@h")]),
    (95.0, 5.0, []),  # its pool was just restarted: this reading may predate it
    (95.0, 61.0, [("restart_worker", "inference")]),  # still over after the pool restart settled: escalate
    (95.0, 181.0, [("restart_pool", "inference@h")]),  # long ago: a new episode
])
def test_memory_restarts_the_pool_then_the_worker(mem, pool_ago, expected):
    g = graph(workers={"inference@h": {"queue": "inference", "memory_percent": mem, "shut_down": False}})
    memory = Memory(mode="NORMAL", pool_restarted_ago={} if pool_ago is None else {"inference@h": pool_ago})
    assert run(g, memory, settle_seconds=60.0) == expected


def test_memory_of_a_worker_whose_queue_is_restarted_anyway_is_not_a_second_action():
    g = graph(queues={"inference": {"status": "CRITICAL", "reasons": ["x"], "enabled": True}},
              workers={"inference@h": {"queue": "inference", "memory_percent": 99.0, "shut_down": False}})
    assert run(g) == [("restart_worker", "inference")]


@pytest.mark.parametrize(("report", "quarantined_by_us", "expected"), [
    ({"failure_streak": 2, "answer_streak": 0, "quarantined": False}, False, []),
    ({"failure_streak": 3, "answer_streak": 0, "quarantined": False}, False, [("quarantine_model", "xgboost")]),
    ({"failure_streak": 5, "answer_streak": 0, "quarantined": True}, True, []),  # already out
    ({"failure_streak": 0, "answer_streak": 2, "quarantined": True}, True, []),
    ({"failure_streak": 0, "answer_streak": 3, "quarantined": True}, True, [("release_model", "xgboost")]),
    # quarantined by the learning manager for its outcomes: not ours to release
    ({"failure_streak": 0, "answer_streak": 9, "quarantined": True}, False, []),
])
def test_a_failing_model_is_quarantined_and_released_when_it_answers_again(report, quarantined_by_us, expected):
    g = graph(models={"model:xgboost": {"status": "DEGRADED", "model_version_id": 7, **report},
                      "rl_agent": {"status": "DEGRADED", "failure_streak": 9}})
    ours = frozenset({"xgboost"} if quarantined_by_us else ())
    memory = Memory(mode="NORMAL", quarantined_by_healing=ours,
                    quarantined=frozenset({"xgboost"} if report["quarantined"] else ()))
    assert run(g, memory) == expected


def test_a_model_already_quarantined_is_not_quarantined_again_on_a_stale_report():
    # Inference runs once a bar: between its passes the report still says "not quarantined".
    g = graph(models={"model:xgboost": {"status": "DEGRADED", "model_version_id": 7, "failure_streak": 4,
                                        "answer_streak": 0, "quarantined": False}})
    memory = Memory(mode="NORMAL", quarantined_by_healing=frozenset({"xgboost"}), quarantined=frozenset({"xgboost"}))
    assert run(g, memory) == []


@pytest.mark.parametrize(("status", "mode", "critical_for", "ours", "expected"), [
    ("CRITICAL", "NORMAL", 31.0, False, [("reduce_only", "mode")]),
    ("CRITICAL", "SHADOW", 31.0, False, [("reduce_only", "mode")]),
    ("CRITICAL", "NORMAL", 10.0, False, []),  # a blip, or still starting
    ("CRITICAL", "HALTED", 99.0, False, []),  # already more restrictive
    ("CRITICAL", "REDUCE_ONLY", 99.0, True, []),
    ("HEALTHY", "REDUCE_ONLY", None, True, [("restore_mode", "mode")]),
    ("HEALTHY", "REDUCE_ONLY", None, False, []),  # the governor's or an operator's: not ours to undo
    ("DISABLED", "NORMAL", None, False, []),
])
def test_execution_unhealthy_goes_reduce_only_and_back(status, mode, critical_for, ours, expected):
    memory = Memory(mode=mode, reduce_only_by_healing=ours, mode_before_healing="SHADOW" if ours else None,
                    execution_critical_seconds=critical_for)
    assert run(graph(execution=status), memory) == expected


def test_restore_names_the_earlier_mode_and_whether_the_operator_allowed_it():
    memory = Memory(mode="REDUCE_ONLY", reduce_only_by_healing=True, mode_before_healing="SHADOW")
    (d,) = decide(graph(), memory, memory_threshold_pct=85, model_failures=3, model_recoveries=3, auto_resume=True)
    assert d.details == {"restore_to": "SHADOW", "allowed": True}
