"""The forecaster interface shared by the four models, input checks, and the torch training loop.

    fit(X_train, y_train, X_val, y_val, *, seed, progress=None) -> metrics
    predict_proba_up(X) -> float64 P(up) in [0, 1], calibrated
    save(directory, metadata) -> metadata as written
    Forecaster.load(directory, expected_feature_version, expected_feature_hash) -> Forecaster

Inputs: "tab" models take X_tab float32 (n_samples, n_features); "seq" models take X_seq float32
(n_samples, lookback, n_channels). Labels are 0/1 (1 = up beyond the fee band over the horizon).
Every input is checked before a model sees it: dtype convertible to float32, the shape the model
was fitted on, and every value finite; otherwise `InvalidInput` says what and where.

`fit` trains with early stopping on the validation set, fits the calibrator on the validation
set's raw probabilities and returns validation metrics (see calibration.calibrated_report):
log_loss, brier, accuracy, auc, ece (calibrated, out of fold), raw_* (uncalibrated),
calibration_method, base_rate / majority_accuracy (what "no skill" scores), n_train, n_val,
train_seconds and the model's own stopping information.

`progress(step, total, info)` is called once per boosting round or epoch (for a progress bar);
`total` is the maximum, early stopping usually ends sooner.
"""
# X / X_train / X_val (matrices) and F (torch.nn.functional) follow the field's conventions.
# ruff: noqa: N803, N812
from __future__ import annotations

import copy
import importlib
import json
import math
import numbers
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ai.forecasters import artifacts
from ai.forecasters.calibration import Calibrator, calibrated_report

ProgressFn = Callable[[int, int, Mapping[str, float]], None]

MODEL_CLASSES: dict[str, str] = {
    "xgboost": "ai.forecasters.xgb:XGBoostForecaster",
    "lightgbm": "ai.forecasters.lgbm:LightGBMForecaster",
    "nhits": "ai.forecasters.nhits:NHiTSForecaster",
    "patchtst": "ai.forecasters.patchtst:PatchTSTForecaster",
}
CALIBRATION_FILE = "calibration.json"
# Keys the forecaster writes itself; the caller's metadata may not set them.
_RESERVED = {"model_type", "input_kind", "input_shape", "params", "metrics", "files", "library_versions",
             "format_version", "artifact_sha256"}


class InvalidInput(ValueError):
    """Features or labels a model must not see (NaN/inf, wrong shape or dtype, bad labels)."""


def forecaster_class(model_type: str) -> type[Forecaster]:
    """The class for a model type, importing only its module (an xgboost artifact needs no torch)."""
    try:
        module, name = MODEL_CLASSES[model_type].split(":")
    except KeyError:
        raise ValueError(f"unknown model_type {model_type!r}; known: {sorted(MODEL_CLASSES)}") from None
    return getattr(importlib.import_module(module), name)


def check_features(X: Any, input_kind: str, sample_shape: tuple[int, ...] | None = None,
                   name: str = "X") -> np.ndarray:
    """X as a C-contiguous float32 array, or InvalidInput naming the problem."""
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, reported below
            arr = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name}: not convertible to a float32 array ({exc})") from None
    ndim = 2 if input_kind == "tab" else 3
    layout = "(n_samples, n_features)" if input_kind == "tab" else "(n_samples, lookback, n_channels)"
    if arr.ndim != ndim:
        raise InvalidInput(f"{name}: expected a {ndim}-d array {layout}, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidInput(f"{name}: no samples")
    if sample_shape is not None and arr.shape[1:] != tuple(sample_shape):
        raise InvalidInput(f"{name}: per-sample shape {arr.shape[1:]} does not match the model's "
                           f"{tuple(sample_shape)} {layout}")
    if not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        rows = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))
        cols = np.flatnonzero(bad.any(axis=0).reshape(-1)) if input_kind == "tab" else None
        where = f"rows {rows[:5].tolist()}{'...' if rows.size > 5 else ''}"
        if cols is not None:
            where += f", feature columns {cols[:5].tolist()}{'...' if cols.size > 5 else ''}"
        raise InvalidInput(f"{name}: {n_nan} NaN and {n_inf} infinite values (after float32 conversion) "
                           f"in {rows.size} of {arr.shape[0]} samples ({where}); rejected before the model")
    return arr


def check_labels(y: Any, n: int, name: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInput(f"{name}: expected shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInput(f"{name}: contains NaN or infinite labels")
    if not np.isin(arr, (0, 1)).all():
        raise InvalidInput(f"{name}: labels must be 0 or 1, got values {np.unique(arr)[:5].tolist()}")
    arr = arr.astype(np.int8)
    if arr.min() == arr.max():
        raise InvalidInput(f"{name}: only one class ({int(arr[0])}); need both up and not-up samples")
    return arr


class Forecaster(ABC):
    """A binary P(up) classifier with calibration and verified artifacts. Subclasses implement
    _fit, _predict_raw, _serialize and _deserialize; the checks, calibration, metrics and
    artifact handling live here."""

    model_type: ClassVar[str]
    input_kind: ClassVar[str]  # "tab" or "seq"
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameters {sorted(unknown)}; "
                            f"known: {sorted(self.DEFAULTS)}")
        self.params: dict[str, Any] = {**copy.deepcopy(self.DEFAULTS), **params}
        self.sample_shape: tuple[int, ...] | None = None
        self.calibrator: Calibrator | None = None
        self.metrics: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}

    # --- to implement ---------------------------------------------------------------------

    @abstractmethod
    def _fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
             seed: int, progress: ProgressFn | None) -> dict[str, Any]:
        """Train with early stopping on (X_val, y_val); return stopping information."""

    @abstractmethod
    def _predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated P(up), float64, for checked input."""

    @abstractmethod
    def _serialize(self) -> dict[str, bytes]:
        """The model's files: {name: bytes}."""

    @abstractmethod
    def _deserialize(self, files: Mapping[str, bytes]) -> None:
        """Restore from verified bytes (self.params and self.sample_shape are set)."""

    # --- public ---------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self.calibrator is not None

    def fit(self, X_train, y_train, X_val, y_val, *, seed: int, progress: ProgressFn | None = None
            ) -> dict[str, Any]:
        Xt = check_features(X_train, self.input_kind, name="X_train")
        Xv = check_features(X_val, self.input_kind, Xt.shape[1:], name="X_val")
        yt = check_labels(y_train, Xt.shape[0], name="y_train")
        yv = check_labels(y_val, Xv.shape[0], name="y_val")
        self.calibrator = None
        t0 = time.perf_counter()
        info = self._fit(Xt, yt, Xv, yv, seed=int(seed), progress=progress)
        train_seconds = time.perf_counter() - t0
        self.sample_shape = tuple(int(d) for d in Xt.shape[1:])
        calibrator, metrics = calibrated_report(self._predict_raw(Xv), yv)
        base_rate = float(yv.mean())
        metrics.update({
            "base_rate": base_rate,
            "majority_accuracy": max(base_rate, 1.0 - base_rate),
            "n_train": int(Xt.shape[0]),
            "n_val": int(Xv.shape[0]),
            "train_seconds": round(train_seconds, 3),
            "seed": int(seed),
            **info,
        })
        self.calibrator = calibrator
        self.metrics = _json_safe(metrics)
        return dict(self.metrics)

    def predict_proba_up(self, X) -> np.ndarray:
        if self.calibrator is None:
            raise RuntimeError(f"{type(self).__name__}: not fitted or loaded")
        X = check_features(X, self.input_kind, self.sample_shape)
        return self.calibrator.transform(self._predict_raw(X))

    def save(self, directory: str | os.PathLike, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Write the artifact. `metadata` must give feature_version, feature_hash and
        training_window {"start_ms", "end_ms"} (artifacts.training_window(t_ms_train)); version
        (default: created-at timestamp), feature_names and anything JSON-serializable may be added."""
        if self.calibrator is None:
            raise RuntimeError(f"{type(self).__name__}: nothing to save, not fitted")
        reserved = _RESERVED & set(metadata)
        if reserved:
            raise ValueError(f"metadata keys {sorted(reserved)} are written by the forecaster")
        for key in ("feature_version", "feature_hash"):
            if not isinstance(metadata.get(key), str) or not metadata[key]:
                raise ValueError(f"metadata[{key!r}] must be a non-empty string")
        window = metadata.get("training_window")
        if not (isinstance(window, Mapping)
                and all(isinstance(window.get(k), numbers.Integral) for k in ("start_ms", "end_ms"))):
            raise ValueError("metadata['training_window'] must be {'start_ms': int, 'end_ms': int}")
        meta = dict(metadata)
        meta["training_window"] = {**window, "start_ms": int(window["start_ms"]), "end_ms": int(window["end_ms"])}
        meta.setdefault("version", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        meta.update({
            "model_type": self.model_type,
            "input_kind": self.input_kind,
            "input_shape": list(self.sample_shape or ()),
            "params": self.params,
            "metrics": self.metrics,
        })
        files = dict(self._serialize())
        files[CALIBRATION_FILE] = _json_bytes(self.calibrator.to_dict())
        written = artifacts.write_artifact(directory, files, meta)
        self.metadata = written
        return written

    @classmethod
    def load(cls, directory: str | os.PathLike, expected_feature_version: str, expected_feature_hash: str
             ) -> Forecaster:
        """Verify and load an artifact. On Forecaster itself, any model type; on a subclass, only
        its own. Raises artifacts.ArtifactCorrupt / ArtifactMismatch naming the problem."""
        directory = Path(directory)
        expected_type = None if cls is Forecaster else cls.model_type
        meta, files = artifacts.read_artifact(directory, expected_feature_version=expected_feature_version,
                                              expected_feature_hash=expected_feature_hash,
                                              expected_model_type=expected_type)
        try:
            klass = forecaster_class(meta.get("model_type"))
            obj = klass(**meta["params"])
            obj.sample_shape = tuple(int(d) for d in meta["input_shape"])
            if meta.get("input_kind") != klass.input_kind or len(obj.sample_shape) != (1 if klass.input_kind == "tab"
                                                                                      else 2):
                raise ValueError(f"input_kind {meta.get('input_kind')!r} / input_shape {meta['input_shape']}")
        except (KeyError, TypeError, ValueError) as exc:
            raise artifacts.ArtifactMismatch(f"artifact {directory}: metadata does not fit this code ({exc})") from None
        try:
            obj.calibrator = Calibrator.from_dict(json.loads(files[CALIBRATION_FILE].decode("utf-8")))
        except Exception as exc:
            raise artifacts.ArtifactCorrupt(f"artifact {directory}: {CALIBRATION_FILE} unreadable ({exc})") from None
        try:
            obj._deserialize(files)
        except artifacts.ArtifactError as exc:
            raise type(exc)(f"artifact {directory}: {exc}") from None
        except Exception as exc:
            raise artifacts.ArtifactCorrupt(f"artifact {directory}: {meta['model_type']} model could not be "
                                            f"restored ({type(exc).__name__}: {exc})") from None
        obj.metrics = dict(meta.get("metrics") or {})
        obj.metadata = meta
        return obj


def _json_safe(d: Mapping[str, Any]) -> dict[str, Any]:
    """NaN/inf floats become None (metadata.json is strict JSON); numpy scalars become Python."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, allow_nan=False).encode("utf-8")


# --- torch models ------------------------------------------------------------------------


class TorchForecaster(Forecaster):
    """Shared training and inference for the PyTorch sequence models. Subclasses give
    `_build(sample_shape) -> neural.SequenceClassifier`: forward maps (B, lookback, channels)
    float32 to (B,) logits; `set_scaler(mean, std)` and `init_output_bias(logit)` are called
    before the first epoch.

    Training: AdamW on binary cross-entropy, shuffled mini-batches from a seeded generator,
    gradient clipping, early stopping on validation loss (best epoch's weights kept).
    `num_threads` (None = leave torch's setting) applies during fit and is restored afterwards;
    inference uses the process's setting (a worker sets torch.set_num_threads once).
    """

    input_kind = "seq"
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 512, "max_epochs": 30, "patience": 4,
        "min_delta": 1e-4, "grad_clip": 1.0, "num_threads": None, "predict_chunk": 4096,
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.model = None

    @abstractmethod
    def _build(self, sample_shape: tuple[int, ...]):
        """A fresh nn.Module for inputs of this per-sample shape."""

    def _fit(self, X_train, y_train, X_val, y_val, *, seed, progress):
        import torch
        import torch.nn.functional as F

        p = self.params
        previous_threads = torch.get_num_threads()
        if p["num_threads"]:
            torch.set_num_threads(int(p["num_threads"]))
        try:
            torch.manual_seed(seed)
            model = self._build(tuple(X_train.shape[1:]))
            mean = X_train.mean(axis=(0, 1), dtype=np.float64)
            std = X_train.std(axis=(0, 1), dtype=np.float64)
            model.set_scaler(torch.tensor(mean, dtype=torch.float32),
                             torch.tensor(np.where(std > 1e-12, std, 1.0), dtype=torch.float32))
            prior = float(np.clip(y_train.mean(), 1e-4, 1 - 1e-4))
            model.init_output_bias(math.log(prior / (1 - prior)))
            xt, yt = torch.from_numpy(_writable(X_train)), torch.from_numpy(y_train.astype(np.float32))
            xv, yv = torch.from_numpy(_writable(X_val)), torch.from_numpy(y_val.astype(np.float32))
            opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
            gen = torch.Generator().manual_seed(seed)
            n, bs = xt.shape[0], int(p["batch_size"])
            best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
            epoch = 0
            for epoch in range(1, int(p["max_epochs"]) + 1):
                model.train()
                perm = torch.randperm(n, generator=gen)
                total, seen = 0.0, 0
                for start in range(0, n, bs):
                    idx = perm[start:start + bs]
                    if idx.numel() < 2:  # batch norm needs more than one sample
                        continue
                    loss = F.binary_cross_entropy_with_logits(model(xt[idx]), yt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), p["grad_clip"])
                    opt.step()
                    total += loss.item() * idx.numel()
                    seen += idx.numel()
                val_loss = float(F.binary_cross_entropy_with_logits(self._logits(model, xv), yv))
                if not math.isfinite(val_loss):
                    raise FloatingPointError(f"{self.model_type}: validation loss is {val_loss} at epoch {epoch}")
                if val_loss < best_loss - p["min_delta"]:
                    best_loss, best_epoch, stale = val_loss, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                if progress is not None:
                    progress(epoch, int(p["max_epochs"]), {"train_loss": total / max(seen, 1), "val_loss": val_loss})
                if stale >= p["patience"]:
                    break
            model.load_state_dict(best_state)
            model.eval()
            self.model = model
        finally:
            torch.set_num_threads(previous_threads)
        return {"epochs": epoch, "best_epoch": best_epoch, "best_val_loss": best_loss,
                "n_parameters": sum(int(t.numel()) for t in model.parameters())}

    def _logits(self, model, x):
        import torch

        model.eval()
        chunk = int(self.params["predict_chunk"])
        with torch.inference_mode():
            if x.shape[0] <= chunk:
                return model(x)
            return torch.cat([model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])

    def _predict_raw(self, X):
        import torch

        logits = self._logits(self.model, torch.from_numpy(_writable(X)))
        return 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))

    def _serialize(self):
        import io

        import torch

        buf = io.BytesIO()
        torch.save(self.model.state_dict(), buf)
        return {"weights.pt": buf.getvalue()}

    def _deserialize(self, files):
        import io

        import torch

        state = torch.load(io.BytesIO(files["weights.pt"]), map_location="cpu", weights_only=True)
        model = self._build(self.sample_shape)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise artifacts.ArtifactMismatch(f"weights.pt does not fit the architecture in metadata: {exc}") from None
        model.eval()
        self.model = model


def _writable(X: np.ndarray) -> np.ndarray:
    return X if X.flags.writeable else X.copy()
