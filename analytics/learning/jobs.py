"""Retraining jobs: request, run (train a challenger, judge it against the champion), recover.

- `request_retraining` creates a queued job and sends it to the learning queue on commit. A
  database constraint allows one queued or running job per model type; a second request is
  refused with JobAlreadyActive, naming the active job.
- `run_job` (task analytics.learning.retrain) claims the job, trains the challenger on recent
  history, registers it, judges it (analytics/learning/challenger.py) and promotes or rejects it
  in one transaction with the job's result. While it runs, a thread stamps `heartbeat_at`.
  Any error fails the job with its reason: the challenger is retired and the champion serves on.
- `reap_stale` (ops queue, every 30 s) finds running jobs whose heartbeat stopped (the worker
  was killed) and queues them again, up to CLM_JOB_MAX_ATTEMPTS, then fails them. An attempt's
  leftover challenger is retired before the next attempt. Promotion is one transaction under
  the registry's constraint of one champion per type, so a kill at any point leaves one champion.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from ai import registry
from ai.models import ModelStatus, ModelType, ModelVersion
from analytics.learning import challenger as judging
from analytics.models import ACTIVE_JOB_STATUSES, JobDecision, JobStatus, JobTrigger, RetrainingJob
from core.limits import TEXT_MAX
from qtweb import tracing
from qtweb.logging import get_logger

log = get_logger(__name__)

RETRAIN_TASK = "analytics.learning.retrain"
# How often a running job proves it is alive; CLM_JOB_STALE_SECONDS must be several of these.
HEARTBEAT_SECONDS = 10.0
# A queued job not started after this long is sent to the learning queue again (its message may
# have been lost with the broker); long enough for the queue's longest job ahead of it.
QUEUED_RESEND_SECONDS = 1800.0
# Hyper-parameters of the challengers, by model type (the forecasters' defaults where absent;
# the neural models' epochs are capped by CLM_NEURAL_MAX_EPOCHS).
CHALLENGER_PARAMS: dict[str, dict] = {}
# One bar in this many is a training sample (neighbouring bars' labels overlap almost wholly).
TRAIN_SAMPLE_EVERY = 3


class RetrainingRefused(ValueError):
    """A retraining request that cannot be honoured (the caller's error; nothing was queued)."""


class UnknownModel(RetrainingRefused):
    pass


class JobAlreadyActive(RetrainingRefused):
    def __init__(self, job: RetrainingJob):
        self.job = job
        super().__init__(f"a retraining job for {job.model_type} is already {job.status}: job {job.pk} "
                         f"(requested {job.requested_at:%Y-%m-%d %H:%M:%S} UTC, {job.trigger}); "
                         "wait for it to finish")


class UnknownJob(RetrainingRefused):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


# --- requests ----------------------------------------------------------------------------------


def model_type_for(model_id: Any) -> str:
    """A model version id (int or digits) or a model type name -> the model type to retrain."""
    if isinstance(model_id, bool) or model_id is None:
        raise UnknownModel(f"model_id must be a model version id or a model type, got {model_id!r}")
    if isinstance(model_id, int) or (isinstance(model_id, str) and model_id.strip().isdigit()):
        mv = ModelVersion.objects.filter(pk=int(model_id)).first()
        if mv is None:
            raise UnknownModel(f"no model version with id {model_id}; see /api/models/")
        return mv.model_type
    if isinstance(model_id, str) and model_id.strip() in ModelType.values:
        return model_id.strip()
    raise UnknownModel(f"unknown model {model_id!r}: give a model version id or one of {', '.join(ModelType.values)}")


def request_retraining(*, model_type: str, trigger: str, reason: str = "", requested_by: str = "") -> RetrainingJob:
    """Queue a retraining job for `model_type` (sent to the learning queue on commit)."""
    if model_type not in ModelType.values:
        raise UnknownModel(f"unknown model type {model_type!r}; known: {', '.join(ModelType.values)}")
    if trigger not in JobTrigger.values:
        raise RetrainingRefused(f"unknown trigger {trigger!r}; one of {', '.join(JobTrigger.values)}")
    with transaction.atomic():
        try:
            with transaction.atomic():
                job = RetrainingJob.objects.create(
                    model_type=model_type, trigger=trigger, requested_at=_now(), requested_by=requested_by[:150],
                    reason=reason[:TEXT_MAX], trace_id=tracing.current_trace_id() or tracing.new_trace_id())
        except IntegrityError:
            active = RetrainingJob.objects.filter(model_type=model_type, status__in=ACTIVE_JOB_STATUSES).first()
            if active is None:  # it finished between the insert and this read: try once more
                return request_retraining(model_type=model_type, trigger=trigger, reason=reason,
                                          requested_by=requested_by)
            raise JobAlreadyActive(active) from None
        _send(job)
    log.info("retraining requested", job_id=job.pk, model_type=model_type, trigger=trigger, reason=reason)
    return job


def _send(job: RetrainingJob) -> None:
    job_id, trace = job.pk, job.trace_id
    transaction.on_commit(lambda: current_app.send_task(RETRAIN_TASK, (job_id,), headers={"trace_id": trace}))


def job_status(job_id: Any) -> dict[str, Any]:
    """A job as RPC and the API show it."""
    if isinstance(job_id, bool) or not (isinstance(job_id, int) or (isinstance(job_id, str) and job_id.isdigit())):
        raise UnknownJob(f"job_id must be a job number, got {job_id!r}")
    job = RetrainingJob.objects.filter(pk=int(job_id)).first()
    if job is None:
        raise UnknownJob(f"no retraining job {job_id}")
    return as_dict(job)


def as_dict(job: RetrainingJob) -> dict[str, Any]:
    def ts(x):
        return x.isoformat() if x else None

    return {"job_id": job.pk, "model_type": job.model_type, "trigger": job.trigger, "status": job.status,
            "stage": job.stage, "attempts": job.attempts, "requested_at": ts(job.requested_at),
            "requested_by": job.requested_by, "reason": job.reason, "started_at": ts(job.started_at),
            "finished_at": ts(job.finished_at), "champion_id": job.champion_id, "challenger_id": job.challenger_id,
            "champion_score": job.champion_score, "challenger_score": job.challenger_score,
            "decision": job.decision, "result": job.result, "error": job.error, "trace_id": job.trace_id}


# --- running a job ------------------------------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Stamps the job's heartbeat_at while it runs (own thread, own database connection)."""

    def __init__(self, job_id: int):
        super().__init__(daemon=True, name=f"retrain-heartbeat-{job_id}")
        self.job_id = job_id
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(HEARTBEAT_SECONDS):
                RetrainingJob.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(heartbeat_at=_now())
        finally:
            connection.close()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=HEARTBEAT_SECONDS * 2)


def _claim(job_id: int) -> RetrainingJob | None:
    with transaction.atomic():
        job = RetrainingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.QUEUED:
            return None  # a redelivered message for a job that runs or ended: nothing to do
        now = _now()
        job.status, job.started_at, job.heartbeat_at, job.stage = JobStatus.RUNNING, now, now, "starting"
        job.attempts += 1
        job.save(update_fields=["status", "started_at", "heartbeat_at", "stage", "attempts"])
        if job.attempts == 1:
            champ = ModelVersion.objects.filter(model_type=job.model_type, status=ModelStatus.CHAMPION).first()
            registry.learning_event("retrain_started", champ or _placeholder(job.model_type),
                                    f"{job.trigger}: {job.reason}"[:TEXT_MAX], job_id=job.pk)
    return job


def _placeholder(model_type: str) -> ModelVersion:
    """An unsaved version that names the type, for events about a type that has no champion."""
    return ModelVersion(model_type=model_type, version=0)


def _stage(job: RetrainingJob, stage: str) -> None:
    job.stage = stage
    RetrainingJob.objects.filter(pk=job.pk).update(stage=stage, heartbeat_at=_now())
    log.info("retraining job stage", job_id=job.pk, model_type=job.model_type, stage=stage)


def run_job(job_id: int) -> RetrainingJob | None:
    job = _claim(job_id)
    if job is None:
        log.info("retraining job not claimable (running elsewhere or ended)", job_id=job_id)
        return None
    beat = _Heartbeat(job.pk)
    beat.start()
    try:
        with tracing.trace(job.trace_id):
            _retire_leftover(job)
            _train_and_judge(job)
    except Exception as exc:  # every failure is recorded on the job; the champion is untouched
        log.exception("retraining job failed", job_id=job.pk, model_type=job.model_type)
        _fail(job, f"{type(exc).__name__}: {exc}")
    finally:
        beat.stop()
    job.refresh_from_db()
    return job


def _retire_leftover(job: RetrainingJob) -> None:
    """A challenger registered by an interrupted attempt is not judged again: it is retired."""
    if job.challenger_id is None:
        return
    mv = ModelVersion.objects.filter(pk=job.challenger_id, status=ModelStatus.CHALLENGER).first()
    if mv is not None:
        registry.retire(mv.pk, reason=f"left by an interrupted attempt of retraining job {job.pk}", job_id=job.pk)
    RetrainingJob.objects.filter(pk=job.pk).update(challenger=None)
    job.challenger_id = None


def _dataset():
    from ai.features.dataset import dataset_from_db

    bars = int(settings.CLM_RETRAIN_DAYS * 86_400 // 300)
    return dataset_from_db(settings.MARKET_EXCHANGE, "5m", n_bars=bars, band=0.0)


def _train_and_judge(job: RetrainingJob) -> None:
    from ai import training
    from ai.features.compute import FEATURE_VERSION, feature_set_hash
    from ai.features.labels import DEFAULT_BAND
    from ai.forecasters.base import forecaster_class

    _stage(job, "building the dataset")
    ds = _dataset()
    bar_ms = 300_000
    train, judge = judging.split_for_judging(ds.t_ms, ds.label_end_ms, judge_bars=settings.CLM_JUDGE_BARS,
                                             bar_ms=bar_ms)
    decisive = np.abs(ds.fwd_log_return) > DEFAULT_BAND
    train = train[decisive[train]]
    train = train[np.isin(ds.t_ms[train], np.unique(ds.t_ms[train])[::TRAIN_SAMPLE_EVERY])]
    if len(train) < 500 or len(judge) < 100:
        raise RetrainingRefused(f"too little history: {len(train)} training samples and {len(judge)} judging "
                                f"samples in the last {settings.CLM_RETRAIN_DAYS} days (need 500 and 100)")
    _stage(job, f"training on {len(train):,} samples")
    params = dict(CHALLENGER_PARAMS.get(job.model_type, {}))
    if job.model_type in (ModelType.NHITS, ModelType.PATCHTST):
        params.setdefault("max_epochs", settings.CLM_NEURAL_MAX_EPOCHS)
    (outcome,) = training.train_and_register(ds.take(train), model_types=[job.model_type], promote="never",
                                    params={job.model_type: params})
    challenger = outcome.model_version
    RetrainingJob.objects.filter(pk=job.pk).update(challenger=challenger)
    job.challenger = challenger
    _fault_point("after_register")

    _stage(job, "judging against the champion")
    window = judging.JudgingWindow(ds.t_ms[judge], ds.symbol[judge], ds.fwd_log_return[judge], ds.y[judge],
                                   decisive[judge], ds.horizon, bar_ms)
    fv, fh = FEATURE_VERSION, feature_set_hash()
    # Both from their artifacts: what would serve is what is judged (a corrupt file fails here).
    challenger_model = forecaster_class(job.model_type).load(challenger.artifact_path, fv, fh)
    champion = ModelVersion.objects.filter(model_type=job.model_type, status=ModelStatus.CHAMPION).first()

    def predict(model):
        return model.predict_proba_up(ds.X_tab[judge] if model.input_kind == "tab" else ds.X_seq[judge])

    challenger_p = predict(challenger_model)
    challenger_fig = judging.score(challenger_p, window)
    champion_fig, interval = None, None
    if champion is not None:
        champion_p = predict(forecaster_class(job.model_type).load(champion.artifact_path, fv, fh))
        champion_fig = judging.score(champion_p, window)
        interval = judging.paired_interval(champion_p, challenger_p, window)
    promote, why = judging.decide(champion_fig, challenger_fig, margin_bps=settings.CLM_PROMOTION_MARGIN_BPS)
    result = {"champion": champion_fig, "challenger": challenger_fig, "difference_interval_bps": interval,
              "margin_bps": settings.CLM_PROMOTION_MARGIN_BPS, "judging_window": {
                  "start_ms": int(window.t_ms.min()), "end_ms": int(window.t_ms.max()), "samples": int(len(judge)),
                  "symbols": int(len(set(window.symbol.tolist())))},
              "training_samples": int(len(train)), "why": why}
    _decide(job, champion, challenger, champion_fig, challenger_fig, promote, why, result)


def _decide(job, champion, challenger, champion_fig, challenger_fig, promote, why, result) -> None:
    scores = {"champion_score": champion_fig["score_bps"] if champion_fig else None,
              "challenger_score": challenger_fig["score_bps"]}
    with transaction.atomic():
        locked = RetrainingJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != JobStatus.RUNNING or locked.attempts != job.attempts:
            raise RetrainingRefused(f"job {job.pk} was taken over (now {locked.status}, attempt {locked.attempts})")
        if promote:
            registry.promote(challenger.pk, reason=f"retraining job {job.pk} ({job.trigger}): {why}"[:TEXT_MAX],
                             job_id=job.pk, **scores)
        else:
            registry.retire(challenger.pk, reason=f"retraining job {job.pk} ({job.trigger}): {why}"[:TEXT_MAX],
                            kind="challenger_rejected", job_id=job.pk, **scores)
        locked.status, locked.finished_at, locked.stage = JobStatus.SUCCEEDED, _now(), "done"
        locked.decision = JobDecision.PROMOTED if promote else JobDecision.REJECTED
        locked.champion, locked.challenger = champion, challenger
        locked.champion_score, locked.challenger_score = scores["champion_score"], scores["challenger_score"]
        locked.result = result
        locked.save()
    log.info("retraining job decided", job_id=job.pk, model_type=job.model_type, decision=locked.decision, why=why)


def _fail(job: RetrainingJob, error: str) -> None:
    with transaction.atomic():
        locked = RetrainingJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != JobStatus.RUNNING:
            return
        if locked.challenger_id:
            mv = ModelVersion.objects.filter(pk=locked.challenger_id, status=ModelStatus.CHALLENGER).first()
            if mv is not None:
                registry.retire(mv.pk, reason=f"retraining job {job.pk} failed: {error}"[:TEXT_MAX], job_id=job.pk)
        locked.status, locked.finished_at, locked.error = JobStatus.FAILED, _now(), error[:TEXT_MAX]
        locked.save(update_fields=["status", "finished_at", "error"])
        champ = ModelVersion.objects.filter(model_type=job.model_type, status=ModelStatus.CHAMPION).first()
        registry.learning_event("retrain_failed", champ or _placeholder(job.model_type),
                                f"job {job.pk}: {error}"[:TEXT_MAX], job_id=job.pk)


def _fault_point(name: str) -> None:
    """Fault injection for the crash tests (settings.LEARNING_FAULTS_ENABLED, set only by the
    test workers' environment): a cache key `learning:fault:<name>` kills the whole worker (its
    process group) with SIGKILL here, halfway through a job."""
    if not getattr(settings, "LEARNING_FAULTS_ENABLED", False):
        return
    from django.core.cache import cache

    if cache.get(f"learning:fault:{name}"):
        cache.delete(f"learning:fault:{name}")
        import os
        import signal

        log.error("fault injection: SIGKILL to this worker's process group", fault=name)
        os.killpg(os.getpgid(os.getpid()), signal.SIGKILL)


# --- recovery and schedules ---------------------------------------------------------------------


def reap_stale(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Running jobs whose worker went silent: queued again (a new attempt) or failed."""
    now = now or _now()
    stale_before = now - timedelta(seconds=settings.CLM_JOB_STALE_SECONDS)
    requeued, failed = [], []
    for job_id in RetrainingJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before
                                               ).values_list("pk", flat=True):
        with transaction.atomic():
            job = RetrainingJob.objects.select_for_update().get(pk=job_id)
            if job.status != JobStatus.RUNNING or job.heartbeat_at >= stale_before:
                continue
            silent = (now - job.heartbeat_at).total_seconds()
            if job.attempts < settings.CLM_JOB_MAX_ATTEMPTS:
                job.status, job.stage = JobStatus.QUEUED, f"requeued: worker silent {silent:.0f}s"
                job.save(update_fields=["status", "stage"])
                _send(job)
                requeued.append(job.pk)
            else:
                job.error = (f"worker lost: no heartbeat for {silent:.0f}s on attempt {job.attempts} of "
                             f"{settings.CLM_JOB_MAX_ATTEMPTS}")
                job.save(update_fields=["error"])
                failed.append(job.pk)
        if job.pk in failed:
            _fail(job, job.error)
    # A queued job whose message was lost (the broker restarted) is sent again; a duplicate is
    # harmless (only a queued job can be claimed). heartbeat_at of a queued job = when last sent.
    resend_before = now - timedelta(seconds=QUEUED_RESEND_SECONDS)
    for job in RetrainingJob.objects.filter(status=JobStatus.QUEUED, requested_at__lt=resend_before).filter(
            Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=resend_before)):
        with transaction.atomic():
            RetrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=now)
            _send(job)
    if requeued or failed:
        log.warning("stale retraining jobs", requeued=requeued, failed=failed)
    return {"requeued": requeued, "failed": failed}


def request_scheduled() -> list[RetrainingJob]:
    """The periodic retraining of every model type that has a champion (one job each)."""
    jobs = []
    for model_type in sorted(set(ModelVersion.objects.filter(status=ModelStatus.CHAMPION)
                                 .values_list("model_type", flat=True))):
        try:
            jobs.append(request_retraining(model_type=model_type, trigger=JobTrigger.SCHEDULED,
                                           reason=f"every {settings.CLM_RETRAINING_INTERVAL_HOURS:g} h"))
        except JobAlreadyActive as exc:
            log.info("scheduled retraining skipped", model_type=model_type, reason=str(exc))
    return jobs
