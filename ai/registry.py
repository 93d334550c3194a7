"""The model registry's services: register, promote, retire, and the serving set.

Used by `manage.py train_models`, the admin, the API and (later) the learning manager. Every
status change is one transaction that also publishes a `learning.event`, so the audit trail
and the dashboard see it; promotion retires the previous champion of the same type.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Max

from ai.models import ModelStatus, ModelType, ModelVersion
from core.limits import TEXT_MAX
from qtweb import tracing
from qtweb.events import EventType, publish
from qtweb.logging import get_logger

log = get_logger(__name__)


class RegistryError(ValueError):
    """A registry request that cannot be honoured (unknown version, wrong status)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _finite_metrics(metrics: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def learning_event(kind: str, mv: ModelVersion, reason: str = "", **extra: Any) -> None:
    """Publish `learning.event` about one model version (in the caller's transaction). `extra`
    holds the optional fields of the payload: job_id, drift_score, threshold, parts,
    champion_score, challenger_score."""
    payload = {"kind": kind, "model_type": mv.model_type, "model_version": str(mv.version), "model_id": mv.pk,
               "metrics": _finite_metrics(mv.metrics), "reason": reason[:TEXT_MAX]}
    payload.update({k: v for k, v in extra.items() if v is not None})
    publish(EventType.LEARNING_EVENT, payload, source="ai-service")


def register(*, model_type: str, artifact_path: str | Path, artifact_checksum: str, feature_version: str,
             feature_hash: str, training_start: datetime, training_end: datetime, metrics: dict[str, Any],
             drift_reference: dict | None = None) -> ModelVersion:
    """A newly trained model enters as a challenger with the next version number of its type."""
    if model_type not in ModelType.values:
        raise RegistryError(f"unknown model type {model_type!r}; known: {', '.join(ModelType.values)}")
    if training_start.tzinfo is None or training_end.tzinfo is None:
        raise RegistryError("training window timestamps must be timezone-aware (UTC)")
    if training_end <= training_start:
        raise RegistryError("training_end must be after training_start")
    with transaction.atomic():
        # Lock the type's rows so two trainers never take the same version number.
        list(ModelVersion.objects.select_for_update().filter(model_type=model_type).values_list("pk", flat=True))
        last = ModelVersion.objects.filter(model_type=model_type).aggregate(v=Max("version"))["v"] or 0
        mv = ModelVersion.objects.create(
            model_type=model_type, version=last + 1, status=ModelStatus.CHALLENGER, created_at=_now(),
            training_start=training_start, training_end=training_end, feature_version=feature_version,
            feature_hash=feature_hash, metrics=metrics, artifact_path=str(artifact_path),
            artifact_checksum=artifact_checksum, trace_id=tracing.current_trace_id() or "",
            drift_reference=drift_reference or {},
        )
        learning_event("retrain_completed", mv, "registered as challenger")
    return mv


def promote(model_version_id: int, *, reason: str, **event_fields: Any) -> ModelVersion:
    """Make a challenger the champion of its type; the previous champion is retired. The
    previous champion's quarantine, if any, goes with it. `event_fields` go on the
    MODEL_PROMOTED event (the learning manager adds both scores and its job)."""
    if not reason or len(reason.strip()) < 3:
        raise RegistryError("a promotion needs a reason (at least 3 characters)")
    with transaction.atomic():
        try:
            mv = ModelVersion.objects.select_for_update().get(pk=model_version_id)
        except ModelVersion.DoesNotExist:
            raise RegistryError(f"no model version with id {model_version_id}") from None
        if mv.status != ModelStatus.CHALLENGER:
            raise RegistryError(f"{mv} is {mv.status}; only a challenger can be promoted")
        for old in ModelVersion.objects.select_for_update().filter(model_type=mv.model_type,
                                                                    status=ModelStatus.CHAMPION):
            old.status, old.retired_at, old.status_reason = ModelStatus.RETIRED, _now(), f"replaced by v{mv.version}"
            old.save(update_fields=["status", "retired_at", "status_reason"])
        mv.status, mv.promoted_at, mv.status_reason = ModelStatus.CHAMPION, _now(), reason
        mv.save(update_fields=["status", "promoted_at", "status_reason"])
        learning_event("model_promoted", mv, reason, **event_fields)
        model_type = mv.model_type
        transaction.on_commit(lambda: _forget_live_record(model_type), robust=True)
    log.info("model promoted", model_type=mv.model_type, version=mv.version, reason=reason)
    return mv


def _forget_live_record(model_type: str) -> None:
    """The live weights' record of the replaced champion goes with it. The record is a cache:
    when Redis cannot be reached (setup_demo trains before the embedded Redis starts) there is
    nothing to forget that the next start would see, and a promotion never fails for it."""
    from ai.outcomes import forget_model

    try:
        forget_model(model_type)
    except Exception as exc:
        log.warning("live weights not reset after a promotion: cache unreachable", model_type=model_type,
                    error=str(exc))


def retire(model_version_id: int, *, reason: str, kind: str | None = None, **event_fields: Any) -> ModelVersion:
    """Take a model out of service (a champion stops serving; its type then has none). `kind`
    overrides the event's kind (the learning manager says challenger_rejected)."""
    if not reason or len(reason.strip()) < 3:
        raise RegistryError("retiring needs a reason (at least 3 characters)")
    with transaction.atomic():
        try:
            mv = ModelVersion.objects.select_for_update().get(pk=model_version_id)
        except ModelVersion.DoesNotExist:
            raise RegistryError(f"no model version with id {model_version_id}") from None
        if mv.status == ModelStatus.RETIRED:
            raise RegistryError(f"{mv} is already retired")
        kind = kind or ("model_rejected" if mv.status == ModelStatus.CHALLENGER else "model_retired")
        mv.status, mv.retired_at, mv.status_reason = ModelStatus.RETIRED, _now(), reason
        mv.save(update_fields=["status", "retired_at", "status_reason"])
        learning_event(kind, mv, reason, **event_fields)
    return mv


def quarantine(model_version_id: int, *, reason: str, **event_fields: Any) -> ModelVersion:
    """Take a champion out of the ensemble's vote (it keeps predicting, so its recovery shows)."""
    with transaction.atomic():
        mv = _locked(model_version_id)
        if mv.status != ModelStatus.CHAMPION:
            raise RegistryError(f"{mv} is {mv.status}; only a serving champion can be quarantined")
        if mv.quarantined_at is not None:
            raise RegistryError(f"{mv} is already quarantined since {mv.quarantined_at:%Y-%m-%d %H:%M} UTC")
        mv.quarantined_at, mv.quarantine_reason = _now(), reason[:500]
        mv.save(update_fields=["quarantined_at", "quarantine_reason"])
        learning_event("model_quarantined", mv, reason, **event_fields)
    log.warning("model quarantined", model_type=mv.model_type, version=mv.version, reason=reason)
    return mv


def release(model_version_id: int, *, reason: str, **event_fields: Any) -> ModelVersion:
    """Give a quarantined model its vote back."""
    with transaction.atomic():
        mv = _locked(model_version_id)
        if mv.quarantined_at is None:
            raise RegistryError(f"{mv} is not quarantined")
        mv.quarantined_at, mv.quarantine_reason = None, ""
        mv.save(update_fields=["quarantined_at", "quarantine_reason"])
        learning_event("model_released", mv, reason, **event_fields)
    log.info("model released from quarantine", model_type=mv.model_type, version=mv.version, reason=reason)
    return mv


def _locked(model_version_id: int) -> ModelVersion:
    try:
        return ModelVersion.objects.select_for_update().get(pk=model_version_id)
    except ModelVersion.DoesNotExist:
        raise RegistryError(f"no model version with id {model_version_id}") from None


@dataclass(frozen=True)
class ServingModel:
    version: ModelVersion
    forecaster: Any


def champions() -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(status=ModelStatus.CHAMPION).order_by("model_type"))


def load_champions(*, feature_version: str, feature_hash: str) -> tuple[list[ServingModel], dict[str, str]]:
    """Load every champion's artifact. A corrupt or mismatched one is refused with its reason
    and left out; the others serve. Returns (serving models, {model_type: why it is missing})."""
    from ai.forecasters.artifacts import ArtifactError
    from ai.forecasters.base import forecaster_class

    serving, problems = [], {}
    for mv in champions():
        try:
            model = forecaster_class(mv.model_type).load(mv.artifact_path, feature_version, feature_hash)
        except (ArtifactError, OSError, ValueError) as exc:
            problems[mv.model_type] = f"v{mv.version}: {exc}"
            log.error("champion refused at load", model_type=mv.model_type, version=mv.version, error=str(exc))
            continue
        serving.append(ServingModel(mv, model))
    for t in ModelType.values:
        if t not in problems and t not in {s.version.model_type for s in serving}:
            problems[t] = "no champion"
    return serving, problems
