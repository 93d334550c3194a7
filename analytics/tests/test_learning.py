"""The learning manager in process on a seeded simulated market (PostgreSQL, Redis cache):
retraining jobs judged against the champion, a corrupt challenger, one job per type, the reaper,
drift on a regime switch and none on a calm market, quarantine."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ai.models import ModelStatus, ModelVersion
from analytics.learning import jobs
from analytics.models import DriftCheck, JobStatus, PredictionOutcome, RetrainingJob
from qtweb.events.models import Event

pytestmark = pytest.mark.django_db

XGB_FAST = {"xgboost": {"n_estimators": 120}}


@pytest.fixture
def market(settings, tmp_path, clean_cache):
    """Six days of the demo universe with the planted effect, and the learning settings scaled to it."""
    from trading.simulator.service import seed_history

    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")
    settings.CLM_RETRAIN_DAYS = 5
    settings.CLM_JUDGE_BARS = 288
    seed_history(days=6, seed=11, alpha=0.8)
    return settings


def champion(*, first_days: float | None = None, n_estimators: int = 300) -> ModelVersion:
    """A champion trained on the whole history, or on its first days only (then it never saw the
    judging window, and had little to learn from)."""
    from ai.features.dataset import dataset_from_db
    from ai.features.labels import DEFAULT_BAND
    from ai.training import train_and_register

    everything = dataset_from_db("paper", "5m", sample_every=3, band=0.0)  # as train_models builds it
    if first_days is not None:
        everything = everything.take(np.flatnonzero(
            everything.label_end_ms < everything.t_ms.min() + first_days * 86_400_000))
    ds = everything.take(np.flatnonzero(np.abs(everything.fwd_log_return) > DEFAULT_BAND))
    (o,) = train_and_register(ds, model_types=["xgboost"], promote="always",
                              params={"xgboost": {"n_estimators": n_estimators}}, reference_x_tab=everything.X_tab)
    return o.model_version


def learning_events(kind: str) -> list[dict]:
    return [e.payload for e in Event.objects.filter(type="learning.event", payload__kind=kind).order_by("timestamp")]


def test_a_job_trains_a_challenger_and_promotes_it_over_a_weak_champion_with_both_scores(market, monkeypatch):
    from ai.inference import InferenceEngine

    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    weak = champion(first_days=1, n_estimators=20)  # one early day: little to learn from
    eng = InferenceEngine()
    eng.refresh()
    assert [s.version.pk for s in eng.serving] == [weak.pk]

    job = jobs.request_retraining(model_type="xgboost", trigger="manual", reason="test", requested_by="tester")
    done = jobs.run_job(job.pk)

    assert done.status == JobStatus.SUCCEEDED and done.attempts == 1 and done.stage == "done"
    assert done.champion_score is not None and done.challenger_score is not None
    assert done.result["judging_window"]["samples"] > 100 and done.result["difference_interval_bps"]["n_periods"] > 5
    # the challenger never trained on the judging window (purged by the horizon)
    challenger = ModelVersion.objects.get(pk=done.challenger_id)
    assert challenger.training_end.timestamp() * 1000 < done.result["judging_window"]["start_ms"]
    assert done.decision == "promoted", done.result["why"]
    assert done.challenger_score - done.champion_score > market.CLM_PROMOTION_MARGIN_BPS
    assert done.result["difference_interval_bps"]["low_bps"] > 0 and done.result["challenger"]["n_trades"] >= 10
    assert ModelVersion.objects.filter(model_type="xgboost", status=ModelStatus.CHAMPION).get().pk == challenger.pk
    promoted = learning_events("model_promoted")[-1]
    assert promoted["job_id"] == job.pk and promoted["model_id"] == challenger.pk
    assert promoted["champion_score"] == pytest.approx(done.champion_score)
    assert promoted["challenger_score"] == pytest.approx(done.challenger_score)
    assert learning_events("retrain_started")[-1]["job_id"] == job.pk
    # the serving process picks the new champion up on its next pass, without a restart
    eng.refresh()
    assert [s.version.pk for s in eng.serving] == [challenger.pk]


def test_a_challenger_no_better_than_the_champion_is_rejected_and_the_champion_serves_on(market, monkeypatch):
    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    market.CLM_PROMOTION_MARGIN_BPS = 1e9  # no challenger can clear this margin
    serving = champion()
    job = jobs.request_retraining(model_type="xgboost", trigger="scheduled")
    done = jobs.run_job(job.pk)
    assert done.status == JobStatus.SUCCEEDED and done.decision == "rejected"
    assert ModelVersion.objects.get(pk=serving.pk).status == ModelStatus.CHAMPION
    assert ModelVersion.objects.get(pk=done.challenger_id).status == ModelStatus.RETIRED
    rejected = learning_events("challenger_rejected")[-1]
    assert rejected["champion_score"] == pytest.approx(done.champion_score)
    assert rejected["challenger_score"] == pytest.approx(done.challenger_score) and rejected["job_id"] == job.pk


def test_a_corrupt_challenger_artifact_fails_the_job_and_the_champion_keeps_serving(market, monkeypatch):
    import ai.training

    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    serving = champion()
    real = ai.training.train_and_register

    def train_then_corrupt(*args, **kwargs):
        outcomes = real(*args, **kwargs)
        for f in Path(outcomes[0].model_version.artifact_path).iterdir():
            if f.name != "metadata.json":
                f.write_bytes(b"not the model that was trained")
        return outcomes

    monkeypatch.setattr(ai.training, "train_and_register", train_then_corrupt)
    job = jobs.request_retraining(model_type="xgboost", trigger="manual")
    done = jobs.run_job(job.pk)
    assert done.status == JobStatus.FAILED and "checksum" in done.error.lower(), done.error
    assert ModelVersion.objects.get(pk=serving.pk).status == ModelStatus.CHAMPION
    assert ModelVersion.objects.filter(model_type="xgboost", status=ModelStatus.CHAMPION).count() == 1
    assert ModelVersion.objects.get(pk=done.challenger_id).status == ModelStatus.RETIRED
    assert learning_events("retrain_failed")[-1]["job_id"] == job.pk


def test_one_active_job_per_model_type_and_unknown_models_are_refused_by_name(db, clean_cache):
    first = jobs.request_retraining(model_type="xgboost", trigger="drift")
    with pytest.raises(jobs.JobAlreadyActive, match=f"already queued: job {first.pk}"):
        jobs.request_retraining(model_type="xgboost", trigger="manual")
    assert jobs.request_retraining(model_type="lightgbm", trigger="manual").pk != first.pk
    RetrainingJob.objects.filter(pk=first.pk).update(status=JobStatus.FAILED)
    assert jobs.request_retraining(model_type="xgboost", trigger="manual").pk != first.pk
    for bad, message in (("foo", "unknown model 'foo'"), (987654, "no model version with id 987654"),
                         (True, "must be a model version id"), (None, "must be a model version id")):
        with pytest.raises(jobs.UnknownModel, match=message):
            jobs.model_type_for(bad)
    with pytest.raises(jobs.UnknownJob, match="no retraining job 424242"):
        jobs.job_status(424242)


def test_the_reaper_retries_a_job_whose_worker_died_then_fails_it_and_retires_its_leftover(market):
    from ai.registry import register

    serving = champion(n_estimators=20)
    now = datetime.now(UTC)
    leftover = register(model_type="xgboost", artifact_path="/nonexistent", artifact_checksum="0" * 64,
                        feature_version="2", feature_hash="h" * 64, training_start=now - timedelta(days=2),
                        training_end=now - timedelta(days=1), metrics={})
    job = RetrainingJob.objects.create(model_type="xgboost", trigger="drift", status=JobStatus.RUNNING,
                                       requested_at=now, started_at=now, attempts=1, challenger=leftover,
                                       heartbeat_at=now - timedelta(seconds=market.CLM_JOB_STALE_SECONDS + 5))
    assert jobs.reap_stale(now=now) == {"requeued": [job.pk], "failed": [], "resent": []}
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.heartbeat_at is None
    # the second attempt dies too: no third
    RetrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=2,
                                                   heartbeat_at=now - timedelta(minutes=10))
    assert jobs.reap_stale(now=now) == {"requeued": [], "failed": [job.pk], "resent": []}
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "worker lost" in job.error and "attempt 2 of 2" in job.error
    assert ModelVersion.objects.get(pk=leftover.pk).status == ModelStatus.RETIRED
    assert ModelVersion.objects.get(pk=serving.pk).status == ModelStatus.CHAMPION
    # a fresh heartbeat is left alone
    alive = RetrainingJob.objects.create(model_type="lightgbm", trigger="manual", status=JobStatus.RUNNING,
                                         requested_at=now, started_at=now, attempts=1, heartbeat_at=now)
    assert jobs.reap_stale(now=now) == {"requeued": [], "failed": [], "resent": []}
    assert RetrainingJob.objects.get(pk=alive.pk).status == JobStatus.RUNNING
    # a queued job whose message never left (the broker was down at commit) is sent again
    unsent = RetrainingJob.objects.create(model_type="nhits", trigger="manual", status=JobStatus.QUEUED,
                                          requested_at=now - timedelta(seconds=jobs.UNSENT_RESEND_SECONDS + 1))
    assert jobs.reap_stale(now=now)["resent"] == [unsent.pk]


def test_a_leftover_challenger_of_an_interrupted_attempt_is_retired_before_the_next(market, monkeypatch):
    from ai.registry import register

    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    champion(n_estimators=20)
    now = datetime.now(UTC)
    leftover = register(model_type="xgboost", artifact_path="/nonexistent", artifact_checksum="0" * 64,
                        feature_version="2", feature_hash="h" * 64, training_start=now - timedelta(days=2),
                        training_end=now - timedelta(days=1), metrics={})
    job = RetrainingJob.objects.create(model_type="xgboost", trigger="drift", status=JobStatus.QUEUED,
                                       requested_at=now, attempts=1, challenger=leftover)
    done = jobs.run_job(job.pk)
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 2 and done.challenger_id != leftover.pk
    assert ModelVersion.objects.get(pk=leftover.pk).status == ModelStatus.RETIRED
    assert ModelVersion.objects.filter(model_type="xgboost", status=ModelStatus.CHAMPION).count() == 1


def _advance(n_bars: int) -> None:
    from trading.simulator.service import advance

    advance(n_bars, now_ms=int(time.time() * 1000) + (n_bars + 1) * 300_000)


def test_drift_is_detected_after_a_regime_switch_but_not_on_the_calm_market(market):
    from analytics.learning.monitor import check_drift
    from trading.simulator.service import regime_switch_schedule, simulator_now_ms

    served = champion(n_estimators=20)
    (calm,) = check_drift()
    assert not calm.detected and calm.drift_score < market.CLM_DRIFT_THRESHOLD, calm.parts
    assert "feature_psi" in calm.parts and "performance_decay" in calm.missing
    assert not RetrainingJob.objects.exists()

    next_bar = simulator_now_ms() // 300_000 * 300_000 + 300_000
    regime_switch_schedule(at_open_time_ms=next_bar, regime="high_vol", vol_multiplier=3.0)
    _advance(150)
    (moved,) = check_drift()
    assert moved.detected and moved.drift_score > market.CLM_DRIFT_THRESHOLD, moved.parts
    assert {"rvol_12", "atr_pct_14"} & set(moved.top_features)
    job = RetrainingJob.objects.get()
    assert job.trigger == "drift" and job.status == JobStatus.QUEUED and moved.job_id == job.pk
    (event,) = learning_events("drift_detected")
    assert event["model_id"] == served.pk and event["model_type"] == "xgboost" and event["job_id"] == job.pk
    assert event["drift_score"] == pytest.approx(moved.drift_score) and event["threshold"] == 0.15
    assert event["parts"]["feature_psi"] == pytest.approx(moved.parts["feature_psi"])
    # a storm of drift finds the active job: still one job, and the event is not repeated
    for _ in range(3):
        (again,) = check_drift()
        assert again.detected and again.job_id == job.pk and "already queued" in again.action
    assert RetrainingJob.objects.count() == 1 and len(learning_events("drift_detected")) == 1
    # after a drift job ends, the cooldown holds further drift jobs of that type
    RetrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=datetime.now(UTC))
    (cooled,) = check_drift()
    assert cooled.detected and cooled.job_id is None and "cooldown" in cooled.action
    assert RetrainingJob.objects.count() == 1 and DriftCheck.objects.count() == 6
    assert len(learning_events("drift_detected")) == 1


SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


def _outcomes(mv: ModelVersion, n_bars: int, *, right: bool, start: datetime) -> None:
    """Resolved outcomes of `mv` at `n_bars` bars from `start`, one per symbol of SYMBOLS."""
    rows = []
    for i in range(n_bars):
        bar = start + timedelta(minutes=5 * i)
        for k, symbol in enumerate(SYMBOLS):
            up = bool((i + k) % 2)
            p = (0.8 if up else 0.2) if right else (0.2 if up else 0.8)
            rows.append(PredictionOutcome(
                event_id=uuid.uuid4(), trace_id="t", model_type=mv.model_type, model_version=str(mv.version),
                symbol=symbol, timeframe="5m", bar_open_time=bar, horizon_bars=12, due_at=bar + timedelta(hours=1),
                prob_up=p, resolved_at=datetime.now(UTC), went_up=up, forward_log_return=0.01 if up else -0.01))
    PredictionOutcome.objects.bulk_create(rows)


def test_a_model_whose_outcomes_collapse_is_quarantined_out_of_the_vote_and_released_when_they_recover(market):
    from ai.inference import InferenceEngine
    from analytics.learning.monitor import QUARANTINE_BARS, supervise_quarantine

    mv = champion(n_estimators=20)
    start = datetime.now(UTC) - timedelta(days=3)
    _outcomes(mv, QUARANTINE_BARS - 1, right=False, start=start)
    assert supervise_quarantine() == {"quarantined": [], "released": []}  # not yet six hours of bars
    _outcomes(mv, 1, right=False, start=start + timedelta(minutes=5 * (QUARANTINE_BARS - 1)))
    assert supervise_quarantine() == {"quarantined": ["xgboost"], "released": []}
    mv.refresh_from_db()
    assert mv.quarantined_at is not None and "Brier 0.640" in mv.quarantine_reason
    assert learning_events("model_quarantined")[-1]["model_id"] == mv.pk
    eng = InferenceEngine()
    eng.refresh()
    assert "xgboost" in eng.quarantined
    # it still predicts, but has no vote: with no other model there is no signal
    from ai.features.dataset import bars_from_db
    from ai.inference import infer

    result = infer(bars_from_db("paper", "5m", ["BTC/USDT:USDT"], 400), eng=eng)
    sig = result.signals["BTC/USDT:USDT"]
    assert "xgboost" in sig.predictions and sig.vote is None and sig.reason == "no model answered"
    assert supervise_quarantine() == {"quarantined": [], "released": []}  # nothing new since
    _outcomes(mv, QUARANTINE_BARS, right=True, start=datetime.now(UTC) + timedelta(minutes=1))
    assert supervise_quarantine() == {"quarantined": [], "released": ["xgboost"]}
    mv.refresh_from_db()
    assert mv.quarantined_at is None and learning_events("model_released")[-1]["model_id"] == mv.pk
    eng.refresh()
    assert eng.quarantined == {}


def test_performance_decay_counts_only_moves_beyond_the_fee_band(market):
    from analytics.learning.outcomes import recent_outcomes

    mv = champion(n_estimators=20)
    _outcomes(mv, 4, right=True, start=datetime.now(UTC) - timedelta(days=1))  # 12 outcomes
    PredictionOutcome.objects.filter(pk__in=list(PredictionOutcome.objects.values_list("pk", flat=True)[:4])).update(
        forward_log_return=0.0005)
    p, y = recent_outcomes("xgboost", str(mv.version), limit=100, beyond_band=True)
    assert len(p) == 8 and np.all((p > 0.5) == y)


def test_a_challenger_built_for_other_features_fails_the_job_and_the_champion_keeps_serving(market, monkeypatch):
    import ai.features.compute

    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    serving = champion(n_estimators=20)
    # what the serving side expects now differs from what the challenger was trained on
    monkeypatch.setattr(ai.features.compute, "feature_set_hash", lambda *a, **k: "f" * 64)
    done = jobs.run_job(jobs.request_retraining(model_type="xgboost", trigger="manual").pk)
    assert done.status == JobStatus.FAILED and "feature" in done.error.lower(), done.error
    assert ModelVersion.objects.get(pk=serving.pk).status == ModelStatus.CHAMPION
    assert ModelVersion.objects.get(pk=done.challenger_id).status == ModelStatus.RETIRED


def test_scheduled_retraining_asks_one_job_per_serving_type_and_skips_an_active_one(db, clean_cache):
    from tests.support.learning import model_version

    model_version("xgboost", 3, ModelStatus.CHAMPION)
    model_version("nhits", 1, ModelStatus.CHAMPION)
    model_version("lightgbm", 2, ModelStatus.RETIRED)
    busy = jobs.request_retraining(model_type="nhits", trigger="manual")
    scheduled = jobs.request_scheduled()
    assert [(j.model_type, j.trigger) for j in scheduled] == [("xgboost", "scheduled")]
    assert RetrainingJob.objects.filter(model_type="nhits").get().pk == busy.pk


def test_a_champion_replaced_while_the_challenger_is_judged_is_not_overruled(market, monkeypatch):
    from ai.registry import promote, register
    from analytics.learning import challenger as judging

    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    champion(first_days=1, n_estimators=20)
    now = datetime.now(UTC)
    operators = register(model_type="xgboost", artifact_path="/nonexistent", artifact_checksum="0" * 64,
                         feature_version="2", feature_hash="h" * 64, training_start=now - timedelta(days=2),
                         training_end=now - timedelta(days=1), metrics={})
    real_decide = judging.decide

    def operator_promotes_meanwhile(*args, **kwargs):
        promote(operators.pk, reason="an operator's choice")
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(judging, "decide", operator_promotes_meanwhile)
    done = jobs.run_job(jobs.request_retraining(model_type="xgboost", trigger="drift").pk)
    assert done.status == JobStatus.FAILED and "champion changed" in done.error, done.error
    assert ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION).pk == operators.pk
    assert ModelVersion.objects.get(pk=done.challenger_id).status == ModelStatus.RETIRED


def test_an_attempt_given_up_for_dead_writes_nothing_when_it_wakes(market, monkeypatch):
    from analytics.learning import challenger as judging

    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    weak = champion(first_days=1, n_estimators=20)
    job = jobs.request_retraining(model_type="xgboost", trigger="manual")
    real_decide = judging.decide

    def another_attempt_took_over(*args, **kwargs):
        # the reaper requeued the job and a second worker claimed it while this one was frozen
        RetrainingJob.objects.filter(pk=job.pk).update(attempts=2, challenger=None)
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(judging, "decide", another_attempt_took_over)
    done = jobs.run_job(job.pk)
    assert done.status == JobStatus.RUNNING and done.attempts == 2 and done.decision == "" and done.error == ""
    assert ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION).pk == weak.pk
    stale = ModelVersion.objects.exclude(pk=weak.pk).get()
    assert stale.status == ModelStatus.RETIRED and "superseded attempt" in stale.status_reason


def test_a_champion_that_cannot_be_loaded_does_not_block_its_replacement(market, monkeypatch):
    monkeypatch.setattr(jobs, "CHALLENGER_PARAMS", XGB_FAST)
    broken = champion(n_estimators=20)
    for f in Path(broken.artifact_path).iterdir():
        if f.name != "metadata.json":
            f.write_bytes(b"damaged on disk")
    done = jobs.run_job(jobs.request_retraining(model_type="xgboost", trigger="manual").pk)
    assert done.status == JobStatus.SUCCEEDED and done.decision == "promoted"
    assert done.champion_score is None and "cannot be loaded" in done.result["why"]
    assert ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION).pk == done.challenger_id
