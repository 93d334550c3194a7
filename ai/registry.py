"""The model registry's services: register, promote, retire, and the serving set.

Used by `manage.py train_models`, the admin, the API and (later) the learning manager. Every
status change is one transaction that also publishes a `learning.event`, so the audit trail
and the dashboard see it; promotion retires the previous champion of the same type.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Max

from ai.models import ModelStatus, ModelType, ModelVersion
from qtweb import tracing
from qtweb.events import EventType, publish
from qtweb.logging import get_logger

log = get_logger(__name__)


class RegistryError(ValueError):
    """A registry request that cannot be honoured (unknown version, wrong status)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _learning_event(kind: str, mv: ModelVersion, reason: str = "") -> None:
    metrics = {k: float(v) for k, v in (mv.metrics or {}).items() if isinstance(v, int | float)}
    publish(EventType.LEARNING_EVENT, {"kind": kind, "model_type": mv.model_type, "model_version": str(mv.version),
                                       "metrics": metrics, "reason": reason}, source="ai-service")


def register(*, model_type: str, artifact_path: str | Path, artifact_checksum: str, feature_version: str,
             feature_hash: str, training_start: datetime, training_end: datetime, metrics: dict[str, Any]
             ) -> ModelVersion:
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
        )
        _learning_event("retrain_completed", mv, "registered as challenger")
    return mv


def promote(model_version_id: int, *, reason: str) -> ModelVersion:
    """Make a challenger the champion of its type; the previous champion is retired."""
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
        _learning_event("model_promoted", mv, reason)
    log.info("model promoted", model_type=mv.model_type, version=mv.version, reason=reason)
    return mv


def retire(model_version_id: int, *, reason: str) -> ModelVersion:
    """Take a model out of service (a champion stops serving; its type then has none)."""
    if not reason or len(reason.strip()) < 3:
        raise RegistryError("retiring needs a reason (at least 3 characters)")
    with transaction.atomic():
        try:
            mv = ModelVersion.objects.select_for_update().get(pk=model_version_id)
        except ModelVersion.DoesNotExist:
            raise RegistryError(f"no model version with id {model_version_id}") from None
        if mv.status == ModelStatus.RETIRED:
            raise RegistryError(f"{mv} is already retired")
        kind = "model_rejected" if mv.status == ModelStatus.CHALLENGER else "model_retired"
        mv.status, mv.retired_at, mv.status_reason = ModelStatus.RETIRED, _now(), reason
        mv.save(update_fields=["status", "retired_at", "status_reason"])
        _learning_event(kind, mv, reason)
    return mv


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
