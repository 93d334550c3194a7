"""LightGBM P(up) classifier on tabular features.

Trained with lightgbm.train (binary objective, deterministic row-wise histograms, bagging) and
early stopping on validation log-loss. The model is kept as its text dump cut at the best
iteration and re-read with Booster(model_str=...), so the object that predicts after fit is
byte-for-byte the one that predicts after load. Inference: Booster.predict on the float32 numpy
array with num_threads=`predict_threads` (1 by default: the lowest single-row latency).
Stored as LightGBM's text format (model.txt), never pickled.
"""
# X / X_train / X_val (feature matrices) follow the field's convention.
# ruff: noqa: N803
from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np

from ai.forecasters.base import Forecaster


class LightGBMForecaster(Forecaster):
    model_type = "lightgbm"
    input_kind = "tab"
    DEFAULTS = {
        "n_estimators": 2000, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 50,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
        "early_stopping_rounds": 50, "n_jobs": None, "predict_threads": 1,
    }

    def __init__(self, **params):
        super().__init__(**params)
        self.booster: lgb.Booster | None = None
        self._model_str = ""

    def _fit(self, X_train, y_train, X_val, y_val, *, seed, progress):
        p = self.params
        params = {
            "objective": "binary", "metric": "binary_logloss", "learning_rate": p["learning_rate"],
            "num_leaves": p["num_leaves"], "min_data_in_leaf": p["min_data_in_leaf"],
            "feature_fraction": p["feature_fraction"], "bagging_fraction": p["bagging_fraction"],
            "bagging_freq": p["bagging_freq"], "lambda_l2": p["lambda_l2"], "seed": seed,
            "deterministic": True, "force_row_wise": True, "num_threads": int(p["n_jobs"] or os.cpu_count() or 1),
            "verbosity": -1,
        }
        dtrain = lgb.Dataset(X_train, label=y_train, params={"verbosity": -1})
        dval = lgb.Dataset(X_val, label=y_val, reference=dtrain)
        total = int(p["n_estimators"])
        rounds = [0]

        def report(env):
            rounds[0] = env.iteration + 1
            if progress is not None:
                loss = next((r[2] for r in env.evaluation_result_list if r[0] == "val"), float("nan"))
                progress(env.iteration + 1, total, {"val_loss": float(loss)})

        callbacks = [lgb.early_stopping(int(p["early_stopping_rounds"]), verbose=False), report]
        booster = lgb.train(params, dtrain, num_boost_round=total, valid_sets=[dval], valid_names=["val"],
                            callbacks=callbacks)
        best = int(booster.best_iteration) or booster.current_iteration()
        self._set_model(booster.model_to_string(num_iteration=best))
        return {"best_iteration": best, "rounds": rounds[0]}

    def _set_model(self, model_str: str) -> None:
        self._model_str = model_str
        self.booster = lgb.Booster(model_str=model_str)

    def _predict_raw(self, X):
        return np.asarray(self.booster.predict(X, num_threads=int(self.params["predict_threads"])), dtype=np.float64)

    def _serialize(self):
        return {"model.txt": self._model_str.encode("utf-8")}

    def _deserialize(self, files):
        self._set_model(files["model.txt"].decode("utf-8"))
        if self.booster.num_feature() != self.sample_shape[0]:
            raise ValueError(f"booster has {self.booster.num_feature()} features, "
                             f"metadata says {self.sample_shape[0]}")
