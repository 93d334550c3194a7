"""The model supervisor: every champion's drift score, and quarantine of collapsed models.

`check_drift` (task analytics.learning.check_drift, learning queue, every CLM_DRIFT_CHECK_SECONDS)
computes the features of the last CLM_DRIFT_WINDOW_BARS bars of every active symbol once, then
per champion the parts of ai/evaluation/drift.py against the reference kept with the model, its
recent predictions from the outcome store and its recent realized outcomes. Each score is a
DriftCheck row. Above CLM_DRIFT_THRESHOLD it publishes `learning.event` DRIFT_DETECTED (model
id and type, drift_score, threshold, parts) and requests a retraining job, unless one of that
type is active or a drift-started job of that type ended within CLM_DRIFT_COOLDOWN_MINUTES
(the check records which).

`supervise_quarantine` takes a champion out of the ensemble's vote when its last
QUARANTINE_WINDOW realized outcomes collapse (Brier above QUARANTINE_BRIER: confidently wrong,
worse than a coin flip by a margin no sampling noise of that many outcomes explains) and gives
the vote back when its outcomes since recover (Brier below RELEASE_BRIER).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from ai import registry
from ai.evaluation import drift
from ai.models import ModelStatus, ModelVersion
from analytics.learning import jobs
from analytics.learning.outcomes import outcomes_over_bars, recent_outcomes, recent_predictions
from analytics.models import DriftCheck, JobTrigger, RetrainingJob
from qtweb import tracing
from qtweb.logging import get_logger

log = get_logger(__name__)

# Realized outcomes beyond the fee band the performance part looks at.
PERFORMANCE_WINDOW = 300
# Quarantine looks at the outcomes of a model's last QUARANTINE_BARS bars (6 hours of 5m bars):
# outcomes of one bar share the market's move and neighbouring bars' horizons overlap, so the
# evidence grows with the hours covered more than with the count. A calibrated model without
# skill scores about 0.25 whatever the market does; 0.30 takes confident predictions that were
# wrong across many market moves.
QUARANTINE_BARS = 72
QUARANTINE_MIN_OUTCOMES = 200
QUARANTINE_BRIER = 0.30
RELEASE_BRIER = 0.26
# Drift checks are kept this long (one row per champion per check).
KEEP_CHECKS = timedelta(days=30)


def recent_feature_rows(*, window_bars: int, exchange: str | None = None, timeframe: str = "5m"
                        ) -> tuple[np.ndarray, list[str], int | None]:
    """(rows, feature names, last bar time ms): the feature rows of the last `window_bars` bars of
    every active symbol, each symbol with the warm-up its features need before the window."""
    from ai.features.compute import DEFAULT_PARAMS, compute_universe_features, feature_names, min_history_bars
    from ai.features.dataset import bars_from_db, sectors_from_db

    exchange = exchange or settings.MARKET_EXCHANGE
    bars = bars_from_db(exchange, timeframe, None, window_bars + min_history_bars())
    bars = {s: b for s, b in bars.items() if len(b) > window_bars}
    names = feature_names(DEFAULT_PARAMS)
    if not bars:
        return np.empty((0, len(names))), names, None
    names, feats = compute_universe_features(bars, DEFAULT_PARAMS, sectors_from_db(exchange, list(bars)))
    rows = np.concatenate([f[-window_bars:] for f in feats.values()])
    last = max(int(b[-1, 0]) for b in bars.values())
    return rows[np.isfinite(rows).all(axis=1)], names, last


def drift_features(names: list[str]) -> list[str]:
    """The features the feature part scores. Market-wide features (mkt_*) are one path shared by
    every symbol: a day of it is one day of one series, which cannot sample its distribution
    (on a calm simulated market they alone pushed the mean PSI past the threshold)."""
    return [n for n in names if not n.startswith("mkt_")]


def model_features(model_type: str, names: list[str]) -> list[str]:
    """The features whose drift concerns a model: the sequence models read only their channels."""
    from ai.features.compute import DEFAULT_PARAMS
    from ai.forecasters.base import forecaster_class

    scored = drift_features(names)
    if forecaster_class(model_type).input_kind == "seq":
        scored = [n for n in scored if n in DEFAULT_PARAMS.seq_channels]
    return scored


def score_model(mv: ModelVersion, rows: np.ndarray, names: list[str], *, since: datetime, threshold: float
                ) -> tuple[drift.DriftScore, dict[str, int]]:
    ref = mv.drift_reference or {}
    missing = {}
    if ref.get("features"):
        scored = model_features(mv.model_type, names)
        fpsi = drift.feature_psi({n: h for n, h in ref["features"].items() if n in scored}, rows, names)
    else:
        fpsi, missing["feature_psi"] = {}, "no training reference stored with this model version"
    preds = recent_predictions(mv.model_type, str(mv.version), since=since)
    ppsi = drift.psi(ref["prediction"], preds) if ref.get("prediction") else None
    if not ref.get("prediction"):
        missing["prediction_psi"] = "no validation predictions stored with this model version"
    p, y = recent_outcomes(mv.model_type, str(mv.version), limit=PERFORMANCE_WINDOW, beyond_band=True)
    brier = mv.metrics.get("brier") if isinstance(mv.metrics.get("brier"), int | float) else None
    decay, _ = drift.performance_decay(brier, p, y)
    score = drift.combine(threshold=threshold, feature_psi_by_name=fpsi, prediction_psi=ppsi, decay=decay,
                          missing=missing)
    return score, {"n_feature_rows": int(len(rows)), "n_predictions": int(len(preds)), "n_outcomes": int(len(p))}


def check_drift(*, now: datetime | None = None) -> list[DriftCheck]:
    now = now or datetime.now(UTC)
    threshold = float(settings.CLM_DRIFT_THRESHOLD)
    window = int(settings.CLM_DRIFT_WINDOW_BARS)
    X, names, last_ms = recent_feature_rows(window_bars=window)
    # The window ends at the market's last bar, which on a simulated market runs ahead of the
    # wall clock (SIM_SPEED_FACTOR): predictions are selected by the bar they were made at.
    end = datetime.fromtimestamp(last_ms / 1000, UTC) if last_ms is not None else now
    since = end - timedelta(minutes=5 * window)
    checks = []
    for mv in registry.champions():
        try:
            checks.append(_check_one(mv, X, names, since=since, threshold=threshold, now=now))
        except Exception as exc:  # one model's broken reference must not stop the others' checks
            log.exception("drift check failed for one model", model_type=mv.model_type, version=mv.version)
            checks.append(DriftCheck.objects.create(
                model_version=mv, model_type=mv.model_type, checked_at=now, drift_score=None, threshold=threshold,
                detected=False, missing={"all": f"{type(exc).__name__}: {exc}"[:500]},
                action="the check failed: drift unknown", trace_id=tracing.current_trace_id() or ""))
    DriftCheck.objects.filter(checked_at__lt=now - KEEP_CHECKS).delete()
    log.info("drift checked", scores={c.model_type: c.drift_score for c in checks},
             detected=[c.model_type for c in checks if c.detected])
    return checks


def _check_one(mv: ModelVersion, rows: np.ndarray, names: list[str], *, since: datetime, threshold: float,
               now: datetime) -> DriftCheck:
    score, counts = score_model(mv, rows, names, since=since, threshold=threshold)
    previous = DriftCheck.objects.filter(model_version=mv).order_by("-checked_at").values_list(
        "detected", flat=True).first()
    with transaction.atomic():  # the check, its job and DRIFT_DETECTED are seen together or not at all
        check = DriftCheck.objects.create(
            model_version=mv, model_type=mv.model_type, checked_at=now, drift_score=score.drift_score,
            threshold=threshold, detected=score.detected, parts=score.parts, top_features=score.top_features,
            missing=score.missing, action="" if score.drift_score is not None else "no part could be computed: "
            "drift unknown", trace_id=tracing.current_trace_id() or "", **counts)
        if score.detected:
            check.job, check.action = _on_drift(mv, score, check, now, newly=not previous)
    return check


def _on_drift(mv: ModelVersion, score: drift.DriftScore, check: DriftCheck, now: datetime, *, newly: bool
              ) -> tuple[RetrainingJob | None, str]:
    """Start a job unless one is active or the cooldown holds. DRIFT_DETECTED is published when
    the drift is new (the previous check was calm) or a job starts; a drift that persists is
    recorded on every check without repeating the event."""
    cooldown = timedelta(minutes=settings.CLM_DRIFT_COOLDOWN_MINUTES)
    recent = (RetrainingJob.objects.filter(model_type=mv.model_type, trigger=JobTrigger.DRIFT,
                                           finished_at__gte=now - cooldown).order_by("-finished_at").first())
    parts = f"; parts {', '.join(f'{k} {v:.3f}' for k, v in score.parts.items())}"
    job, action, started = None, "", False
    if recent is not None:
        action = (f"no new job: drift job {recent.pk} ended {recent.finished_at:%H:%M} UTC, within the "
                  f"{settings.CLM_DRIFT_COOLDOWN_MINUTES:g} min cooldown")
    else:
        try:
            job = jobs.request_retraining(model_type=mv.model_type, trigger=JobTrigger.DRIFT,
                                          reason=f"drift {score.drift_score:.3f} > {score.threshold:.3f}{parts}")
            action, started = f"retraining job {job.pk} queued", True
        except jobs.JobAlreadyActive as exc:
            job, action = exc.job, f"retraining job {exc.job.pk} already {exc.job.status}"
    DriftCheck.objects.filter(pk=check.pk).update(action=action[:500], job=job)
    if newly or started:
        registry.learning_event("drift_detected", mv, action, drift_score=score.drift_score,
                                threshold=score.threshold, parts=score.parts, job_id=job.pk if job else None)
    log.warning("drift detected", model_type=mv.model_type, version=mv.version, drift_score=score.drift_score,
                parts=score.parts, top_features=score.top_features, action=action)
    return job, action[:500]


def supervise_quarantine() -> dict[str, list[str]]:
    """Quarantine champions whose outcomes collapsed; release those that recovered."""
    from ai.evaluation.drift import brier

    quarantined, released = [], []
    for mv in ModelVersion.objects.filter(status=ModelStatus.CHAMPION):
        p, y = outcomes_over_bars(mv.model_type, str(mv.version), n_bars=QUARANTINE_BARS,
                                  recorded_since=mv.quarantined_at)
        if len(p) < QUARANTINE_MIN_OUTCOMES:
            continue  # too little (since the quarantine began) to judge either way
        b = brier(p, y)
        facts = {"recent_brier": b, "outcomes": float(len(p))}
        try:
            if mv.quarantined_at is None and b > QUARANTINE_BRIER:
                registry.quarantine(mv.pk, reason=f"Brier {b:.3f} over its last {len(p)} outcomes ({QUARANTINE_BARS} "
                                                   f"bars) > {QUARANTINE_BRIER} (a coin flip scores 0.25)", parts=facts)
                quarantined.append(mv.model_type)
            elif mv.quarantined_at is not None and b < RELEASE_BRIER:
                registry.release(mv.pk, reason=f"Brier {b:.3f} over {len(p)} outcomes since its quarantine "
                                                f"< {RELEASE_BRIER}", parts=facts)
                released.append(mv.model_type)
        except registry.RegistryError as exc:  # retired or changed meanwhile: next run sees the new state
            log.warning("quarantine decision skipped", model_type=mv.model_type, version=mv.version, reason=str(exc))
    return {"quarantined": quarantined, "released": released}


def drift_summary() -> list[dict[str, Any]]:
    """The latest drift check of every champion (RPC get_drift, the API)."""
    out = []
    for mv in registry.champions():
        c = DriftCheck.objects.filter(model_version=mv).order_by("-checked_at").first()
        out.append({"model_id": mv.pk, "model_type": mv.model_type, "model_version": mv.version,
                    "quarantined": mv.quarantined_at is not None,
                    "checked_at": c.checked_at.isoformat() if c else None,
                    "drift_score": c.drift_score if c else None, "threshold": c.threshold if c else None,
                    "unknown": c is None or c.drift_score is None,
                    "detected": c.detected if c else None, "parts": c.parts if c else {},
                    "missing": c.missing if c else {}, "action": c.action if c else ""})
    return out
