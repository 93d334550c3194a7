"""The learning loop with real workers (inference, learning, ops), PostgreSQL and Redis.

1. A regime switch injected into the simulator is detected by the drift check on the learning
   worker within DETECT_WITHIN_BARS bars; the retraining job it starts runs on the learning
   worker; the challenger decision is recorded with both scores; the promoted challenger is
   served by the same inference worker process on its next pass.
2. A retraining job whose worker is SIGKILLed halfway (after the challenger is registered, or
   inside the promotion's transaction) is retried by the reaper on the ops worker; the leftover
   challenger is retired and there is never more than one champion of the type. RPC refuses an
   unknown model and a second job while one is active.
"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from celery import current_app
from django.core.cache import cache

from qtweb import rpc
from qtweb.events.models import Event
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A 3x volatility break is scored by the one-day drift window once enough of the window has
# moved (docs/BENCHMARKS.md, "The learning manager", gives the bars measured).
DETECT_WITHIN_BARS = 150
CHECK_EVERY_BARS = 12


@pytest.fixture
def market(settings, tmp_path, celery_workers):
    from tests.support.execution import clear_app_cache
    from trading.simulator.service import seed_history

    clear_app_cache()
    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")  # absolute paths: the workers read them too
    seed_history(days=6, seed=11, alpha=0.8)
    yield
    clear_app_cache()


def weak_champion():
    """xgboost trained on the first day only, with 20 trees: a champion a challenger can beat."""
    from ai.features.dataset import dataset_from_db
    from ai.features.labels import DEFAULT_BAND
    from ai.training import train_and_register

    everything = dataset_from_db("paper", "5m", sample_every=3, band=0.0)
    everything = everything.take(np.flatnonzero(everything.label_end_ms < everything.t_ms.min() + 86_400_000))
    ds = everything.take(np.flatnonzero(np.abs(everything.fwd_log_return) > DEFAULT_BAND))
    (o,) = train_and_register(ds, model_types=["xgboost"], promote="always", params={"xgboost": {"n_estimators": 20}},
                              reference_x_tab=everything.X_tab)
    return o.model_version


def send(task: str, queue: str) -> None:
    current_app.send_task(task, queue=queue)


def advance(n_bars: int) -> None:
    from trading.simulator.service import advance as sim_advance

    sim_advance(n_bars, now_ms=int(time.time() * 1000) + 10 * 86_400_000)


def served_versions(since) -> set[str]:
    return set(Event.objects.filter(type="model.prediction", timestamp__gt=since)
               .values_list("payload__model_version", flat=True))


def now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_a_regime_switch_is_detected_retrained_judged_and_the_new_champion_served_without_a_restart(market,
                                                                                                    celery_workers):
    from ai.models import ModelStatus, ModelVersion
    from analytics.models import DriftCheck, RetrainingJob
    from trading.simulator.service import regime_switch_schedule, simulator_now_ms

    weak = weak_champion()
    inference_pid = celery_workers.procs["inference@test"].pid
    mark = now()
    send("ai.inference.run", "inference")
    assert wait_for(lambda: served_versions(mark), timeout=60) == {str(weak.version)}

    send("analytics.learning.check_drift", "learning")
    calm = wait_for(lambda: DriftCheck.objects.first(), timeout=60)
    assert calm is not None and not calm.detected, calm.parts

    switch_at = (simulator_now_ms() // 300_000 + 1) * 300_000
    regime_switch_schedule(at_open_time_ms=switch_at, regime="high_vol", vol_multiplier=3.0)
    bars = 0
    detected = None
    while bars < DETECT_WITHIN_BARS and detected is None:
        advance(CHECK_EVERY_BARS)
        bars += CHECK_EVERY_BARS
        seen = DriftCheck.objects.count()
        send("analytics.learning.check_drift", "learning")
        assert wait_for(lambda s=seen: DriftCheck.objects.count() > s, timeout=60)
        detected = DriftCheck.objects.filter(detected=True).first()
    assert detected is not None, f"no drift within {bars} bars of a 3x volatility break"
    print(f"DRIFT_DETECTED {bars} bars after a 3x volatility break (checks every {CHECK_EVERY_BARS})")
    event = Event.objects.get(type="learning.event", payload__kind="drift_detected")  # published once
    assert event.payload["drift_score"] > event.payload["threshold"] == 0.15 and event.payload["parts"]

    job = wait_for(lambda: RetrainingJob.objects.filter(status__in=["succeeded", "failed"]).first(), timeout=240)
    assert job is not None and job.trigger == "drift", list(RetrainingJob.objects.values())
    assert job.status == "succeeded", job.error
    assert job.champion_score is not None and job.challenger_score is not None
    assert job.decision == "promoted", job.result.get("why")
    new = ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION)
    assert new.pk == job.challenger_id != weak.pk
    promoted = Event.objects.get(type="learning.event", payload__kind="model_promoted", payload__job_id=job.pk)
    assert promoted.payload["challenger_score"] == pytest.approx(job.challenger_score)

    mark = now()
    send("ai.inference.run", "inference")  # the next bar's pass, same worker process
    assert wait_for(lambda: served_versions(mark), timeout=60) == {str(new.version)}
    assert celery_workers.procs["inference@test"].pid == inference_pid


@pytest.mark.parametrize("fault", ["after_register", "inside_promotion"])
def test_a_retraining_job_killed_halfway_is_retried_and_never_leaves_two_champions(market, celery_workers, fault):
    """Killed after registering its challenger, or inside the promotion's transaction after the
    registry swapped the champions but before the commit: either way one champion, the weak one
    still serving; the reaper (the real task on the ops worker, CLM_JOB_STALE_SECONDS=30 in the
    test settings) queues a second attempt, which retires the leftover and decides again."""
    from ai.models import ModelStatus, ModelVersion
    from analytics.models import RetrainingJob

    weak = weak_champion()
    with pytest.raises(rpc.RpcBadParams, match="unknown model 'gradient-magic'"):
        rpc.call("analytics", "trigger_retraining", {"model_id": "gradient-magic"}, timeout=10)
    cache.set(f"learning:fault:{fault}", 1, 300)  # the learning worker dies there
    proc = celery_workers.procs["learning@test"]
    reply = rpc.call("analytics", "trigger_retraining", {"model_id": weak.pk}, timeout=10)
    job_id = reply["job_id"]
    with pytest.raises(rpc.RpcBadParams, match=f"already (queued|running): job {job_id}"):
        rpc.call("analytics", "trigger_retraining", {"model_id": "xgboost"}, timeout=10)

    def champions() -> list[int]:
        return list(ModelVersion.objects.filter(model_type="xgboost", status=ModelStatus.CHAMPION)
                    .values_list("pk", flat=True))

    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # SIGKILLed halfway
        assert len(champions()) == 1
        time.sleep(0.2)
    assert proc.poll() is not None, "the fault point never killed the learning worker"
    job = RetrainingJob.objects.get(pk=job_id)
    leftover = job.challenger_id
    assert job.status == "running" and job.attempts == 1 and leftover is not None
    assert champions() == [weak.pk]  # a promotion killed before its commit changed nothing
    assert rpc.call("analytics", "get_retraining_job", {"job_id": job_id}, timeout=10)["status"] == "running"

    celery_workers.stop("learning@test", sig=signal.SIGKILL)
    celery_workers.start("learning")
    celery_workers.wait_ready()

    def requeued():  # what beat does every 30 s
        send("analytics.learning.reap_jobs", "ops")
        return RetrainingJob.objects.filter(pk=job_id, attempts=2).exists() or \
            RetrainingJob.objects.filter(pk=job_id, status="queued").exists()

    assert wait_for(requeued, timeout=90, poll=3), "the reaper never gave the silent attempt up"

    def finished():
        assert len(champions()) == 1
        return RetrainingJob.objects.filter(pk=job_id, status__in=["succeeded", "failed"]).first()

    done = wait_for(finished, timeout=240, poll=0.2)
    assert done is not None and done.status == "succeeded" and done.attempts == 2, done.error
    assert ModelVersion.objects.get(pk=leftover).status == ModelStatus.RETIRED
    assert done.challenger_id != leftover and len(champions()) == 1
    status = rpc.call("analytics", "get_retraining_job", {"job_id": job_id}, timeout=10)
    assert status["decision"] == done.decision and status["champion_score"] == pytest.approx(done.champion_score)
