"""Retraining jobs: request, run (train a challenger, judge it against the champion), recover.

- `request_retraining` creates a queued job and sends it to the learning queue on commit. A
  database constraint allows one queued or running job per model type; a second request is
  refused with JobAlreadyActive, naming the active job.
- `run_job` (task analytics.learning.retrain) claims the job, trains the challenger on recent
  history, registers it, judges it (analytics/learning/challenger.py) and promotes or rejects it
  in one transaction with the job's result, after checking under lock that the champion it was
  judged against still serves. While it runs, a thread stamps `heartbeat_at`. Any error fails
  the job with its reason: the challenger is retired and the champion serves on.
- `reap_stale` (ops queue, every 30 s) finds running jobs whose heartbeat stopped (the worker
  was killed) and queues them again, up to CLM_JOB_MAX_ATTEMPTS, then fails them. An attempt's
  leftover challenger is retired before the next attempt. Every write of an attempt is fenced by
  its attempt number, so an attempt that was given up for dead and wakes up later changes
  nothing. Promotion is one transaction under the registry's constraint of one champion per
  type, so a kill at any point leaves one champion.
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
from qtweb.faults import kill_point
from qtweb.logging import get_logger

log = get_logger(__name__)

RETRAIN_TASK = "analytics.learning.retrain"
# How often a running job proves it is alive; CLM_JOB_STALE_SECONDS must be several of these.
HEARTBEAT_SECONDS = 10.0
# A queued job not started this long after it was sent goes to the learning queue again (its
# message may have been lost with the broker); long enough for the longest job ahead of it. A
# duplicate is harmless: only a queued job can be claimed.
QUEUED_RESEND_SECONDS = 1800.0
# A queued job never sent (the broker was unreachable at commit) is sent after this long.
UNSENT_RESEND_SECONDS = 60.0
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
    """Send the job to the learning queue once the transaction commits. A broker that cannot be
    reached fails nothing here: the job stays queued, unsent, and the reaper sends it later."""
    job_id, trace = job.pk, job.trace_id

    def send() -> None:
        current_app.send_task(RETRAIN_TASK, (job_id,), headers={"trace_id": trace})
        # heartbeat_at of a queued job: when it was last sent
        RetrainingJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(heartbeat_at=_now())

    transaction.on_commit(send, robust=True)


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
    """Stamps the job's heartbeat_at while this attempt owns it (own thread, own database
    connection). A database error is retried on the next beat; once the job is no longer this
    attempt's (given up for dead, or ended), it stops."""

    def __init__(self, job_id: int, attempt: int):
        super().__init__(daemon=True, name=f"retrain-heartbeat-{job_id}")
        self.job_id, self.attempt = job_id, attempt
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(heartbeat_seconds()):
                try:
                    if not _mine(self.job_id, self.attempt).update(heartbeat_at=_now()):
                        return
                except Exception as exc:  # a database blip: the next beat tries again
                    log.warning("retraining heartbeat failed", job_id=self.job_id, error=str(exc))
                    connection.close()
        finally:
            connection.close()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=HEARTBEAT_SECONDS * 2)


def heartbeat_seconds() -> float:
    """Several beats fit in the silence after which the reaper gives a job up."""
    return min(HEARTBEAT_SECONDS, settings.CLM_JOB_STALE_SECONDS / 4)


def _mine(job_id: int, attempt: int):
    """The job's row while this attempt owns it: every write of an attempt goes through this."""
    return RetrainingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt)


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


class AttemptSuperseded(RuntimeError):
    """This attempt was given up for dead and the job moved on: it must write nothing more."""


def _stage(job: RetrainingJob, stage: str) -> None:
    job.stage = stage
    if not _mine(job.pk, job.attempts).update(stage=stage, heartbeat_at=_now()):
        raise AttemptSuperseded(f"job {job.pk} is no longer attempt {job.attempts}'s")
    log.info("retraining job stage", job_id=job.pk, model_type=job.model_type, stage=stage)


def run_job(job_id: int) -> RetrainingJob | None:
    job = _claim(job_id)
    if job is None:
        log.info("retraining job not claimable (running elsewhere or ended)", job_id=job_id)
        return None
    beat = _Heartbeat(job.pk, job.attempts)
    beat.start()
    try:
        with tracing.trace(job.trace_id):
            _retire_leftover(job)
            _train_and_judge(job)
    except AttemptSuperseded as exc:
        log.warning("retraining attempt superseded: its work is dropped", job_id=job.pk, attempt=job.attempts,
                    reason=str(exc))
        _discard_challenger(job)
    except Exception as exc:  # every failure is recorded on the job; the champion is untouched
        log.exception("retraining job failed", job_id=job.pk, model_type=job.model_type)
        _fail(job, f"{type(exc).__name__}: {exc}", attempt=job.attempts)
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
        _remove_artifact(mv)
    if not _mine(job.pk, job.attempts).update(challenger=None):
        raise AttemptSuperseded(f"job {job.pk} is no longer attempt {job.attempts}'s")
    job.challenger_id = None


def _dataset():
    from ai.features.dataset import dataset_from_db

    bars = int(settings.CLM_RETRAIN_DAYS * 86_400 // 300)
    return dataset_from_db(settings.MARKET_EXCHANGE, "5m", n_bars=bars, band=0.0)


def _train_and_judge(job: RetrainingJob) -> None:
    from ai import training
    from ai.features.compute import FEATURE_VERSION, feature_set_hash
    from ai.features.labels import DEFAULT_BAND
    from ai.forecasters.artifacts import ArtifactError
    from ai.forecasters.base import forecaster_class

    _stage(job, "building the dataset")
    ds = _dataset()
    bar_ms = 300_000
    before_judging, judge = judging.split_for_judging(ds.t_ms, ds.label_end_ms,
                                                      judge_bars=settings.CLM_JUDGE_BARS, bar_ms=bar_ms)
    decisive = np.abs(ds.fwd_log_return) > DEFAULT_BAND
    train = before_judging[decisive[before_judging]]
    train = train[np.isin(ds.t_ms[train], np.unique(ds.t_ms[train])[::TRAIN_SAMPLE_EVERY])]
    if len(train) < 500 or len(judge) < 100:
        raise RetrainingRefused(f"too little history: {len(train)} training samples and {len(judge)} judging "
                                f"samples in the last {settings.CLM_RETRAIN_DAYS} days (need 500 and 100)")
    _stage(job, f"training on {len(train):,} samples")
    params = dict(CHALLENGER_PARAMS.get(job.model_type, {}))
    if job.model_type in (ModelType.NHITS, ModelType.PATCHTST):
        params.setdefault("max_epochs", settings.CLM_NEURAL_MAX_EPOCHS)
    # The drift reference is every bar before the judging window, small moves included: it is
    # compared with live rows, which are not selected by their (future) move.
    (outcome,) = training.train_and_register(ds.take(train), model_types=[job.model_type], promote="never",
                                             params={job.model_type: params},
                                             reference_x_tab=ds.X_tab[before_judging])
    challenger = outcome.model_version
    job.challenger = challenger
    if not _mine(job.pk, job.attempts).update(challenger=challenger):
        raise AttemptSuperseded(f"job {job.pk} moved on while attempt {job.attempts} trained")
    _fault_point("after_register")

    _stage(job, "judging against the champion")
    window = judging.JudgingWindow(ds.t_ms[judge], ds.symbol[judge], ds.fwd_log_return[judge], ds.y[judge],
                                   decisive[judge], ds.horizon, bar_ms)
    fv, fh = FEATURE_VERSION, feature_set_hash()
    klass = forecaster_class(job.model_type)
    x_judge = ds.X_tab[judge] if klass.input_kind == "tab" else ds.X_seq[judge]
    # Both from their artifacts: what would serve is what is judged (a corrupt file fails here).
    challenger_p = klass.load(challenger.artifact_path, fv, fh).predict_proba_up(x_judge)
    challenger_fig = judging.score(challenger_p, window)
    champion = ModelVersion.objects.filter(model_type=job.model_type, status=ModelStatus.CHAMPION).first()
    champion_fig, interval, champion_note = None, None, ""
    if champion is not None:
        try:
            champion_p = klass.load(champion.artifact_path, fv, fh).predict_proba_up(x_judge)
        except (ArtifactError, OSError, ValueError) as exc:
            # Inference cannot serve it either: the type has no working champion to defend.
            champion_note = f"champion v{champion.version} cannot be loaded ({exc}): judged without it"
            log.error("champion not loadable while judging", job_id=job.pk, version=champion.version, error=str(exc))
        else:
            champion_fig = judging.score(champion_p, window)
            interval = judging.paired_interval(champion_p, challenger_p, window)
    promote, why = judging.decide(champion_fig, challenger_fig, interval,
                                  margin_bps=settings.CLM_PROMOTION_MARGIN_BPS)
    why = f"{champion_note}; {why}" if champion_note else why
    result = {"champion": champion_fig, "challenger": challenger_fig, "difference_interval_bps": interval,
              "margin_bps": settings.CLM_PROMOTION_MARGIN_BPS, "judging_window": {
                  "start_ms": int(window.t_ms.min()), "end_ms": int(window.t_ms.max()), "samples": int(len(judge)),
                  "symbols": int(len(set(window.symbol.tolist())))},
              "training_samples": int(len(train)), "why": why}
    _decide(job, champion, challenger, champion_fig, challenger_fig, promote, why, result)


def _decide(job, champion, challenger, champion_fig, challenger_fig, promote, why, result) -> None:
    scores = {"champion_score": champion_fig["score_bps"] if champion_fig else None,
              "challenger_score": challenger_fig["score_bps"]}
    reason = f"retraining job {job.pk} ({job.trigger}): {why}"[:TEXT_MAX]
    with transaction.atomic():
        locked = _mine(job.pk, job.attempts).select_for_update().first()
        if locked is None:
            raise AttemptSuperseded(f"job {job.pk} is no longer attempt {job.attempts}'s")
        # The judgement holds only for the models judged: an operator may have promoted or
        # retired one meanwhile. Then nothing is promoted and the job says why.
        rows = {m.pk: m for m in ModelVersion.objects.select_for_update().filter(
            model_type=job.model_type, status__in=[ModelStatus.CHAMPION, ModelStatus.CHALLENGER])}
        serving = next((m.pk for m in rows.values() if m.status == ModelStatus.CHAMPION), None)
        if serving != (champion.pk if champion else None) or challenger.pk not in rows or \
                rows[challenger.pk].status != ModelStatus.CHALLENGER:
            raise RetrainingRefused(
                f"the champion changed while the challenger was judged (judged against "
                f"{f'v{champion.version}' if champion else 'none'}, now serving id {serving}); request a new job")
        if promote:
            registry.promote(challenger.pk, reason=reason, job_id=job.pk, **scores)
            _fault_point("inside_promotion")
        else:
            registry.retire(challenger.pk, reason=reason, kind="challenger_rejected", job_id=job.pk, **scores)
        locked.status, locked.finished_at, locked.stage = JobStatus.SUCCEEDED, _now(), "done"
        locked.decision = JobDecision.PROMOTED if promote else JobDecision.REJECTED
        locked.champion, locked.challenger = champion, challenger
        locked.champion_score, locked.challenger_score = scores["champion_score"], scores["challenger_score"]
        locked.result = result
        locked.save()
    if not promote:
        _remove_artifact(challenger)
    log.info("retraining job decided", job_id=job.pk, model_type=job.model_type, decision=locked.decision, why=why)


def _remove_artifact(mv: ModelVersion) -> None:
    """A rejected or failed challenger can never serve (only a challenger can be promoted): its
    files go, its registry row and metrics stay."""
    import shutil
    from pathlib import Path

    from ai.training import artifacts_root

    path = Path(mv.artifact_path)
    if path.is_dir() and artifacts_root().resolve() in path.resolve().parents:
        shutil.rmtree(path, ignore_errors=True)


def _discard_challenger(job: RetrainingJob) -> None:
    """A superseded attempt's own challenger (not the job's current one) is retired."""
    if job.challenger_id is None:
        return
    current = RetrainingJob.objects.filter(pk=job.pk).values_list("challenger_id", flat=True).first()
    mv = ModelVersion.objects.filter(pk=job.challenger_id, status=ModelStatus.CHALLENGER).first()
    if mv is not None and current != mv.pk:
        registry.retire(mv.pk, reason=f"trained by a superseded attempt of retraining job {job.pk}", job_id=job.pk)
        _remove_artifact(mv)


def _fail(job: RetrainingJob, error: str, *, attempt: int) -> None:
    """Fail the job if `attempt` still owns it: its challenger is retired, the champion untouched."""
    retired = None
    with transaction.atomic(), tracing.trace(job.trace_id):
        locked = _mine(job.pk, attempt).select_for_update().first()
        if locked is None:
            return  # another attempt owns the job now (or it ended): not ours to fail
        if locked.challenger_id:
            retired = ModelVersion.objects.filter(pk=locked.challenger_id, status=ModelStatus.CHALLENGER).first()
            if retired is not None:
                registry.retire(retired.pk, reason=f"retraining job {job.pk} failed: {error}"[:TEXT_MAX],
                                job_id=job.pk)
        locked.status, locked.finished_at, locked.error = JobStatus.FAILED, _now(), error[:TEXT_MAX]
        locked.save(update_fields=["status", "finished_at", "error"])
        champ = ModelVersion.objects.filter(model_type=job.model_type, status=ModelStatus.CHAMPION).first()
        registry.learning_event("retrain_failed", champ or _placeholder(job.model_type),
                                f"job {job.pk}: {error}"[:TEXT_MAX], job_id=job.pk)
    if retired is not None:
        _remove_artifact(retired)


def _fault_point(name: str) -> None:
    """A crash-test kill point (qtweb/faults.py), halfway through a job."""
    kill_point("learning", name, enabled=getattr(settings, "LEARNING_FAULTS_ENABLED", False))


# --- recovery and schedules ---------------------------------------------------------------------


def reap_stale(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Running jobs whose worker went silent: queued again (a new attempt) or failed. Queued
    jobs whose message never left (the broker was down) or was lost are sent again."""
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
                job.heartbeat_at = None
                job.save(update_fields=["status", "stage", "heartbeat_at"])
                _send(job)
                requeued.append(job.pk)
                continue
        _fail(job, f"worker lost: no heartbeat for {silent:.0f}s on attempt {job.attempts} of "
                   f"{settings.CLM_JOB_MAX_ATTEMPTS}", attempt=job.attempts)
        failed.append(job.pk)
    # heartbeat_at of a queued job = when it was last sent; none = never sent.
    unsent_before = now - timedelta(seconds=UNSENT_RESEND_SECONDS)
    resend_before = now - timedelta(seconds=QUEUED_RESEND_SECONDS)
    resent = []
    for job in RetrainingJob.objects.filter(status=JobStatus.QUEUED).filter(
            Q(heartbeat_at__isnull=True, requested_at__lt=unsent_before) | Q(heartbeat_at__lt=resend_before)):
        with transaction.atomic():
            _send(job)
        resent.append(job.pk)
    if requeued or failed or resent:
        log.warning("stale retraining jobs", requeued=requeued, failed=failed, resent=resent)
    return {"requeued": requeued, "failed": failed, "resent": resent}


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
