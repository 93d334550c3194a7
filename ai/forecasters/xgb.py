"""XGBoost P(up) classifier on tabular features.

Trained with xgboost.train (hist trees, binary:logistic) and early stopping on validation
log-loss; the booster is cut to its best iteration, so the artifact holds only the trees used.
Inference goes through Booster.inplace_predict on the float32 numpy array (no DMatrix), with the
booster's nthread set to `predict_threads` (1 by default: a single row is fastest on one thread,
and inference workers run one model pass per process). Stored as UBJSON (model.ubj), never pickled.
"""
# X / X_train / X_val (feature matrices) follow the field's convention.
# ruff: noqa: N803
from __future__ import annotations

import os

import numpy as np
import xgboost as xgb

from ai.forecasters.base import Forecaster


class XGBoostForecaster(Forecaster):
    model_type = "xgboost"
    input_kind = "tab"
    DEFAULTS = {
        "n_estimators": 2000, "learning_rate": 0.05, "max_depth": 5, "min_child_weight": 5.0,
        "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "early_stopping_rounds": 50,
        "n_jobs": None, "predict_threads": 1,
    }

    def __init__(self, **params):
        super().__init__(**params)
        self.booster = None

    def _fit(self, X_train, y_train, X_val, y_val, *, seed, progress):
        p = self.params
        n_jobs = int(p["n_jobs"] or os.cpu_count() or 1)
        dtrain = xgb.DMatrix(X_train, label=y_train, nthread=n_jobs)
        dval = xgb.DMatrix(X_val, label=y_val, nthread=n_jobs)
        params = {
            "objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
            "eta": p["learning_rate"], "max_depth": p["max_depth"], "min_child_weight": p["min_child_weight"],
            "subsample": p["subsample"], "colsample_bytree": p["colsample_bytree"], "lambda": p["reg_lambda"],
            "seed": seed, "nthread": n_jobs, "verbosity": 0,
        }
        callbacks = [_Progress(progress, int(p["n_estimators"]))] if progress is not None else None
        booster = xgb.train(params, dtrain, num_boost_round=int(p["n_estimators"]), evals=[(dval, "val")],
                            early_stopping_rounds=int(p["early_stopping_rounds"]), verbose_eval=False,
                            callbacks=callbacks)
        best = int(booster.best_iteration)
        rounds = booster.num_boosted_rounds()
        self.booster = booster[: best + 1]
        self.booster.set_param({"nthread": int(p["predict_threads"])})
        return {"best_iteration": best + 1, "rounds": rounds}

    def _predict_raw(self, X):
        return self.booster.inplace_predict(X).astype(np.float64)

    def _serialize(self):
        return {"model.ubj": bytes(self.booster.save_raw(raw_format="ubj"))}

    def _deserialize(self, files):
        booster = xgb.Booster()
        booster.load_model(bytearray(files["model.ubj"]))
        if booster.num_features() != self.sample_shape[0]:
            raise ValueError(f"booster has {booster.num_features()} features, metadata says {self.sample_shape[0]}")
        booster.set_param({"nthread": int(self.params["predict_threads"])})
        self.booster = booster


class _Progress(xgb.callback.TrainingCallback):
    def __init__(self, fn, total: int):
        super().__init__()
        self.fn, self.total = fn, total

    def after_iteration(self, model, epoch, evals_log) -> bool:
        loss = evals_log.get("val", {}).get("logloss", [float("nan")])[-1]
        self.fn(epoch + 1, self.total, {"val_loss": float(loss)})
        return False
