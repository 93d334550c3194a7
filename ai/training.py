"""Training as a service: dataset -> purged time split -> fit -> artifact -> registry.

`manage.py train_models` and (later) the learning manager call `train_and_register`. A new
model enters as a challenger; with `promote="if_better"` it becomes champion when its type has
none or when it beats the champion's validation log-loss on its own validation window.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from ai import registry
from ai.models import ModelStatus, ModelType, ModelVersion
from qtweb.logging import get_logger

log = get_logger(__name__)


@dataclass
class TrainingOutcome:
    model_version: ModelVersion
    metrics: dict
    promoted: bool
    reason: str


def artifacts_root() -> Path:
    return Path(getattr(settings, "MODEL_ARTIFACTS_DIR", "") or Path(settings.VAR_DIR) / "models")


def _better(new: dict, champion: ModelVersion | None) -> tuple[bool, str]:
    if champion is None:
        return True, "first model of its type"
    old_ll, new_ll = champion.metrics.get("log_loss"), new.get("log_loss")
    if not isinstance(new_ll, int | float):
        return False, "no validation log-loss to compare"
    if not isinstance(old_ll, int | float) or new_ll < old_ll:
        return True, f"validation log-loss {new_ll:.4f} vs champion v{champion.version} {old_ll}"
    return False, f"validation log-loss {new_ll:.4f} not below champion v{champion.version} {old_ll:.4f}"


def drift_reference(feature_rows, feature_names, validation_p) -> dict:
    """What the drift score compares a model's recent world against: decile histograms of every
    tabular feature over the rows of its training window and of its P(up) on its validation rows
    (ai/evaluation/drift.py). Sequence models read a subset of the same features."""
    from ai.evaluation.drift import feature_reference, histogram

    return {"features": feature_reference(feature_rows, feature_names), "prediction": histogram(validation_p)}


def train_and_register(dataset, *, model_types: Iterable[str] = tuple(ModelType.values), seed: int = 42,
                       promote: str = "if_better", validation_fraction: float = 0.2,
                       params: dict[str, dict] | None = None,
                       progress: Callable[[str, int, int, dict], None] | None = None,
                       reference_x_tab=None) -> list[TrainingOutcome]:
    """Fit each model type on the dataset's purged time split and register it.

    reference_x_tab: the feature rows of the training window for the drift reference, small
    moves included (the training samples are selected by their future move, which live rows
    are not: their volatility features would read as drift). Default: the training samples."""
    from ai.features.splits import train_validation_split
    from ai.forecasters.artifacts import training_window
    from ai.forecasters.base import forecaster_class

    if promote not in ("if_better", "never", "always"):
        raise ValueError(f"promote must be if_better, never or always (got {promote!r})")
    types = list(model_types)
    unknown = [t for t in types if t not in ModelType.values]
    if unknown:
        raise ValueError(f"unknown model type(s) {unknown}; known: {', '.join(ModelType.values)}")
    if len(dataset.y) == 0:
        raise ValueError("the dataset is empty: not enough history to train on")
    train_idx, val_idx = train_validation_split(dataset.t_ms, dataset.label_end_ms, horizon_bars=dataset.horizon,
                                                validation_fraction=validation_fraction)
    window = training_window(dataset.t_ms[train_idx])
    outcomes = []
    for model_type in types:
        klass = forecaster_class(model_type)
        model = klass(**(params or {}).get(model_type, {}))
        X = dataset.X_tab if klass.input_kind == "tab" else dataset.X_seq
        step = (lambda done, total, info, _t=model_type: progress(_t, done, total, dict(info))) if progress else None
        metrics = model.fit(X[train_idx], dataset.y[train_idx], X[val_idx], dataset.y[val_idx], seed=seed,
                            progress=step)
        reference = drift_reference(dataset.X_tab[train_idx] if reference_x_tab is None else reference_x_tab,
                                    dataset.feature_names, model.predict_proba_up(X[val_idx]))
        directory = artifacts_root() / model_type / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        written = model.save(directory, {
            "feature_version": dataset.feature_version, "feature_hash": dataset.feature_hash,
            "training_window": window, "feature_names": list(dataset.feature_names), "horizon": dataset.horizon,
        })
        mv = registry.register(
            model_type=model_type, artifact_path=str(directory), artifact_checksum=written["artifact_sha256"],
            feature_version=dataset.feature_version, feature_hash=dataset.feature_hash,
            training_start=datetime.fromtimestamp(window["start_ms"] / 1000, UTC),
            training_end=datetime.fromtimestamp(window["end_ms"] / 1000, UTC), metrics=dict(metrics),
            drift_reference=reference,
        )
        champion = ModelVersion.objects.filter(model_type=model_type, status=ModelStatus.CHAMPION).first()
        if promote == "always":
            ok, reason = True, "promoted on request"
        elif promote == "never":
            ok, reason = False, "promotion not requested"
        else:
            ok, reason = _better(metrics, champion)
        if ok:
            registry.promote(mv.pk, reason=reason)
            mv.refresh_from_db()
        log.info("model trained", model_type=model_type, version=mv.version, promoted=ok, reason=reason,
                 log_loss=metrics.get("log_loss"), accuracy=metrics.get("accuracy"))
        outcomes.append(TrainingOutcome(mv, dict(metrics), ok, reason))
    return outcomes
