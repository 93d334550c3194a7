"""The four P(up) forecasters: XGBoost and LightGBM on tabular features, N-HiTS and PatchTST
(PyTorch) on the raw sequence window. One interface (base.Forecaster): fit with early stopping
and validation calibration, predict_proba_up, save / load verified artifacts.

Importing this package imports no model library; `create` / `load_forecaster` import only the
module of the model type asked for.
"""
from __future__ import annotations

from ai.forecasters.artifacts import ArtifactCorrupt, ArtifactError, ArtifactMismatch, training_window
from ai.forecasters.base import MODEL_CLASSES, Forecaster, InvalidInput, forecaster_class

MODEL_TYPES: tuple[str, ...] = tuple(MODEL_CLASSES)


def create(model_type: str, **params) -> Forecaster:
    """A new, unfitted forecaster of this type ("xgboost", "lightgbm", "nhits", "patchtst")."""
    return forecaster_class(model_type)(**params)


def load_forecaster(directory, expected_feature_version: str, expected_feature_hash: str) -> Forecaster:
    """Verify and load an artifact of any model type (see Forecaster.load)."""
    return Forecaster.load(directory, expected_feature_version, expected_feature_hash)


__all__ = [
    "MODEL_TYPES", "ArtifactCorrupt", "ArtifactError", "ArtifactMismatch", "Forecaster", "InvalidInput", "create",
    "forecaster_class", "load_forecaster", "training_window",
]
