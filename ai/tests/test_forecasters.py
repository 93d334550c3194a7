"""The four forecasters on synthetic data with a learnable signal, their artifacts, input checks,
calibration, and the N-HiTS / PatchTST architectures. Pure: no database. Models are tiny so the
file runs in seconds (one thread each, so a busy two-core machine does not slow it much)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ai.forecasters import (
    MODEL_TYPES,
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMismatch,
    Forecaster,
    InvalidInput,
    create,
    load_forecaster,
    training_window,
)
from ai.forecasters.artifacts import METADATA_FILE
from ai.forecasters.calibration import (
    IsotonicCalibrator,
    SigmoidCalibrator,
    calibrated_report,
    classification_metrics,
    expected_calibration_error,
    fit_calibrator,
)

FEATURE_VERSION = "fv-test-1"
FEATURE_HASH = "0123456789abcdef"
T0 = 1_767_225_600_000
BAR_MS = 300_000

TINY = {
    "xgboost": {"n_jobs": 1, "learning_rate": 0.1},
    "lightgbm": {"n_jobs": 1, "learning_rate": 0.1},
    "nhits": {"hidden": 32, "max_epochs": 8, "num_threads": 1},
    "patchtst": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "max_epochs": 8, "num_threads": 1},
}
KIND = {"xgboost": "tab", "lightgbm": "tab", "nhits": "seq", "patchtst": "seq"}


def tab_data(n: int, seed: int):
    """20 features; y depends on two of them and an interaction (Bayes accuracy about 0.78)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20)).astype(np.float32)
    z = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3] + rng.logistic(size=n)
    return X, (z > 0.3).astype(np.int64)


def seq_data(n: int, seed: int):
    """(n, 64, 3): channel 0 returns with a drift over the last 16 bars whose sign is y (the
    noise hides it partly: Bayes accuracy about 0.8); channels 1 and 2 are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 64, 3)).astype(np.float32)
    drift = rng.normal(0.0, 0.35, size=n)
    X[:, -16:, 0] += drift[:, None].astype(np.float32)
    X[:, :, 0] *= 0.01  # returns-like scale
    X[:, :, 2] = X[:, :, 2] * 3.0 + 5.0  # another scale and offset
    return X, (drift > 0).astype(np.int64)


@pytest.fixture(scope="module")
def datasets():
    out = {}
    for kind, make in (("tab", tab_data), ("seq", seq_data)):
        Xt, yt = make(3000, 1)
        Xv, yv = make(1500, 2)
        Xs, ys = make(3000, 3)
        out[kind] = {"train": (Xt, yt), "val": (Xv, yv), "test": (Xs, ys),
                     "t_ms": T0 + BAR_MS * np.arange(3000, dtype=np.int64)}
    return out


@pytest.fixture(scope="module", params=MODEL_TYPES)
def fitted(request, datasets):
    model_type = request.param
    d = datasets[KIND[model_type]]
    model = create(model_type, **TINY[model_type])
    calls = []
    metrics = model.fit(*d["train"], *d["val"], seed=7, progress=lambda step, total, info: calls.append(
        (step, total, dict(info))))
    return model, metrics, d, calls


def metadata_for(d, **extra):
    return {"feature_version": FEATURE_VERSION, "feature_hash": FEATURE_HASH,
            "training_window": training_window(d["t_ms"]), "version": "test-1", **extra}


# --- learning and calibration -------------------------------------------------------------


def test_learns_the_signal_with_calibrated_probabilities(fitted):
    model, metrics, d, calls = fitted
    Xs, ys = d["test"]
    p = model.predict_proba_up(Xs)
    assert p.dtype == np.float64 and p.shape == (len(ys),)
    assert np.all((p >= 0.0) & (p <= 1.0))
    m = classification_metrics(p, ys)
    majority = max(ys.mean(), 1 - ys.mean())
    assert m["accuracy"] >= 0.68, m
    assert m["accuracy"] >= majority + 0.12, m
    assert m["auc"] >= 0.76, m  # no skill: 0.5
    assert m["ece"] <= 0.06, m
    assert m["log_loss"] < 0.6, m  # log(2) = 0.693 is a coin
    # The model's own validation report says the same thing.
    for key in ("log_loss", "brier", "accuracy", "auc", "ece", "raw_log_loss", "calibration_method",
                "base_rate", "majority_accuracy", "n_train", "n_val", "train_seconds"):
        assert key in metrics, key
    assert metrics["n_train"] == 3000 and metrics["n_val"] == 1500
    assert metrics["accuracy"] > 0.68 and metrics["ece"] < 0.08
    assert calls and [c[0] for c in calls] == list(range(1, len(calls) + 1))


def test_probabilities_track_the_signal_strength(fitted):
    """Stronger evidence -> more extreme probability (the output is not a constant or a coin)."""
    model, _, d, _ = fitted
    Xs, ys = d["test"]
    p = model.predict_proba_up(Xs)
    assert p[ys == 1].mean() - p[ys == 0].mean() > 0.2
    assert p.std() > 0.15


def test_seeded_torch_training_is_reproducible(datasets):
    d = datasets["seq"]
    Xt, yt = d["train"][0][:1000], d["train"][1][:1000]
    Xv, yv = d["val"]
    Xs = d["test"][0][:200]
    params = {"hidden": 16, "max_epochs": 2, "num_threads": 1}
    a = create("nhits", **params)
    a.fit(Xt, yt, Xv, yv, seed=3)
    b = create("nhits", **params)
    b.fit(Xt, yt, Xv, yv, seed=3)
    c = create("nhits", **params)
    c.fit(Xt, yt, Xv, yv, seed=4)
    np.testing.assert_array_equal(a.predict_proba_up(Xs), b.predict_proba_up(Xs))
    assert not np.array_equal(a.predict_proba_up(Xs), c.predict_proba_up(Xs))


# --- artifacts ----------------------------------------------------------------------------


def test_save_load_gives_identical_predictions_and_full_metadata(fitted, tmp_path):
    model, metrics, d, _ = fitted
    directory = tmp_path / "artifact"
    written = model.save(directory, metadata_for(d, feature_names=[f"f{i}" for i in range(3)]))
    Xs = d["test"][0]
    loaded = load_forecaster(directory, FEATURE_VERSION, FEATURE_HASH)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_proba_up(Xs), model.predict_proba_up(Xs))
    np.testing.assert_array_equal(loaded.predict_proba_up(Xs[:1]), model.predict_proba_up(Xs[:1]))
    again = type(model).load(directory, FEATURE_VERSION, FEATURE_HASH)
    np.testing.assert_array_equal(again.predict_proba_up(Xs[:50]), model.predict_proba_up(Xs[:50]))

    meta = json.loads((directory / METADATA_FILE).read_text())
    assert meta == written == loaded.metadata
    assert meta["model_type"] == model.model_type and meta["version"] == "test-1"
    assert meta["feature_version"] == FEATURE_VERSION and meta["feature_hash"] == FEATURE_HASH
    assert meta["training_window"] == {"start_ms": T0, "end_ms": T0 + BAR_MS * 2999}
    assert meta["metrics"] == metrics
    assert meta["created_at"].endswith("Z")
    for lib in ("python", "numpy", "torch", "xgboost", "lightgbm"):
        assert meta["library_versions"][lib] not in ("", "absent"), lib
    on_disk = set(os.listdir(directory)) - {METADATA_FILE}
    assert set(meta["files"]) == on_disk and len(on_disk) >= 2
    assert all(len(h) == 64 for h in meta["files"].values())
    assert len(meta["artifact_sha256"]) == 64


def _flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_any_file_is_refused_as_corrupt(fitted, tmp_path):
    model, _, d, _ = fitted
    base = tmp_path / "a"
    model.save(base, metadata_for(d))
    names = sorted(json.loads((base / METADATA_FILE).read_text())["files"])
    for name in names:
        directory = tmp_path / f"flip-{name}"
        model.save(directory, metadata_for(d))
        _flip_byte(directory / name)
        with pytest.raises(ArtifactCorrupt, match=f"checksum mismatch for {name}"):
            load_forecaster(directory, FEATURE_VERSION, FEATURE_HASH)


def test_edited_or_damaged_metadata_is_refused_as_corrupt(fitted, tmp_path):
    model, _, d, _ = fitted
    # An edited value (valid JSON, e.g. someone "fixing" the feature hash by hand).
    edited = tmp_path / "edited"
    model.save(edited, metadata_for(d))
    meta = json.loads((edited / METADATA_FILE).read_text())
    meta["feature_hash"] = "ffff"
    (edited / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactCorrupt, match="metadata.json was modified"):
        load_forecaster(edited, FEATURE_VERSION, "ffff")
    # A flipped byte that breaks the JSON.
    broken = tmp_path / "broken"
    model.save(broken, metadata_for(d))
    text = (broken / METADATA_FILE).read_bytes()
    _flip_byte(broken / METADATA_FILE, text.index(b'"model_type"'))
    with pytest.raises(ArtifactCorrupt, match="metadata.json"):
        load_forecaster(broken, FEATURE_VERSION, FEATURE_HASH)
    # A missing file.
    missing = tmp_path / "missing"
    model.save(missing, metadata_for(d))
    (missing / "calibration.json").unlink()
    with pytest.raises(ArtifactCorrupt, match="calibration.json is missing"):
        load_forecaster(missing, FEATURE_VERSION, FEATURE_HASH)


def test_another_feature_hash_version_or_model_type_is_a_mismatch(fitted, tmp_path):
    model, _, d, _ = fitted
    directory = tmp_path / "a"
    model.save(directory, metadata_for(d))
    with pytest.raises(ArtifactMismatch, match=f"feature_hash is '{FEATURE_HASH}', expected 'deadbeef'"):
        load_forecaster(directory, FEATURE_VERSION, "deadbeef")
    with pytest.raises(ArtifactMismatch, match=f"feature_version is '{FEATURE_VERSION}', expected 'fv-2'"):
        load_forecaster(directory, "fv-2", FEATURE_HASH)
    other = next(t for t in MODEL_TYPES if t != model.model_type)
    other_cls = type(create(other))
    with pytest.raises(ArtifactMismatch, match=f"model_type is '{model.model_type}', expected '{other}'"):
        other_cls.load(directory, FEATURE_VERSION, FEATURE_HASH)
    assert issubclass(ArtifactMismatch, ArtifactError) and issubclass(ArtifactCorrupt, ArtifactError)


def test_save_refuses_incomplete_metadata_and_existing_artifacts(fitted, tmp_path):
    model, _, d, _ = fitted
    with pytest.raises(ValueError, match="feature_hash"):
        model.save(tmp_path / "x", {"feature_version": "v", "training_window": training_window(d["t_ms"])})
    with pytest.raises(ValueError, match="training_window"):
        model.save(tmp_path / "x", {"feature_version": "v", "feature_hash": "h"})
    with pytest.raises(ValueError, match="written by the forecaster"):
        model.save(tmp_path / "x", metadata_for(d, metrics={}))
    model.save(tmp_path / "y", metadata_for(d))
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "y", metadata_for(d))
    assert not (tmp_path / "x").exists()
    with pytest.raises(ArtifactError, match="no such directory"):
        load_forecaster(tmp_path / "nothing-here", FEATURE_VERSION, FEATURE_HASH)


# --- bad input ----------------------------------------------------------------------------


def test_nan_and_inf_inputs_are_rejected_by_name(fitted):
    model, _, d, _ = fitted
    X = d["test"][0][:10].copy()
    X[3].flat[5] = np.nan
    X[7].flat[0] = np.inf
    with pytest.raises(InvalidInput, match=r"1 NaN and 1 infinite values .*rows \[3, 7\]"):
        model.predict_proba_up(X)
    with pytest.raises(InvalidInput, match="per-sample shape"):
        model.predict_proba_up(d["test"][0][:, :-1])
    with pytest.raises(InvalidInput, match="expected a"):
        model.predict_proba_up(d["test"][0][0])


def test_fit_rejects_bad_input_before_the_model_sees_it(datasets, monkeypatch):
    d = datasets["tab"]
    model = create("xgboost")
    monkeypatch.setattr(model, "_fit", lambda *a, **k: pytest.fail("the model saw bad input"))
    Xt, yt = d["train"]
    Xv, yv = d["val"]
    bad = Xt.copy()
    bad[10, 4] = np.nan
    with pytest.raises(InvalidInput, match=r"X_train: 1 NaN .* feature columns \[4\]"):
        model.fit(bad, yt, Xv, yv, seed=0)
    big = Xv.astype(np.float64)
    big[0, 0] = 1e300  # finite in float64, inf as float32
    with pytest.raises(InvalidInput, match="X_val: 0 NaN and 1 infinite"):
        model.fit(Xt, yt, big, yv, seed=0)
    with pytest.raises(InvalidInput, match="y_train: labels must be 0 or 1"):
        model.fit(Xt, np.where(yt == 1, 2, 0), Xv, yv, seed=0)
    with pytest.raises(InvalidInput, match="y_val: only one class"):
        model.fit(Xt, yt, Xv, np.zeros_like(yv), seed=0)
    with pytest.raises(InvalidInput, match="per-sample shape"):
        model.fit(Xt, yt, Xv[:, :5], yv, seed=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_proba_up(Xv)
    with pytest.raises(TypeError, match="unknown parameters"):
        create("lightgbm", max_depth=3)


# --- calibration --------------------------------------------------------------------------


def test_calibration_repairs_overconfident_scores_out_of_sample():
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.05, 0.95, size=8000)
    y = (rng.uniform(size=true_p.size) < true_p).astype(int)
    logit = np.log(true_p / (1 - true_p))
    raw = 1 / (1 + np.exp(-3.0 * logit))  # overconfident
    fit_sl, test_sl = slice(0, 4000), slice(4000, None)
    raw_ece = expected_calibration_error(raw[test_sl], y[test_sl])
    assert raw_ece > 0.1
    for method in ("isotonic", "sigmoid"):
        cal = fit_calibrator(raw[fit_sl], y[fit_sl], method)
        fixed = cal.transform(raw[test_sl])
        assert expected_calibration_error(fixed, y[test_sl]) < 0.04, method
        assert np.all(np.diff(cal.transform(np.linspace(0, 1, 101))) >= 0)  # monotone
        again = type(cal).from_dict(json.loads(json.dumps(cal.to_dict())))
        np.testing.assert_array_equal(again.transform(raw), cal.transform(raw))
    sig = fit_calibrator(raw, y, "sigmoid")
    assert abs(sig.a - 1 / 3) < 0.05  # recovers the inverse of the distortion
    # Small samples fall back to Platt scaling; metrics name the method.
    cal, metrics = calibrated_report(raw[:300], y[:300])
    assert isinstance(cal, SigmoidCalibrator) and metrics["calibration_method"] == "sigmoid"
    cal, metrics = calibrated_report(raw, y)
    assert metrics["calibration_method"] in ("isotonic", "sigmoid") and metrics["ece"] < 0.03
    assert metrics["raw_ece"] > 0.1
    iso = fit_calibrator(raw, y, "isotonic")
    assert isinstance(iso, IsotonicCalibrator)
    ends = iso.transform(np.array([0.0, 1.0]))
    assert 1e-3 <= ends[0] < 0.1 and 0.9 < ends[1] <= 1 - 1e-3  # never exactly 0 or 1


def test_ece_and_metrics_definitions():
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(np.full(100, 0.5), y) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(100, 0.9), y) == pytest.approx(0.4)
    m = classification_metrics(np.where(y == 1, 0.8, 0.2), y)
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0
    assert m["brier"] == pytest.approx(0.04) and m["log_loss"] == pytest.approx(-np.log(0.8))
    assert classification_metrics(np.full(4, 0.3), np.zeros(4))["auc"] is None


# --- architectures ------------------------------------------------------------------------


def test_nhits_multi_rate_pooling_and_hierarchical_interpolation_shapes():
    import torch

    from ai.forecasters.nhits import NHiTS, NHiTSBlock, interpolate

    torch.manual_seed(0)
    x = torch.randn(5, 3, 64)
    for k, r, pooled, nb, nf in ((8, 8, 8, 8, 2), (4, 4, 16, 16, 4), (1, 1, 64, 64, 16), (5, 3, 13, 22, 6)):
        block = NHiTSBlock(lookback=64, horizon=16, n_channels=3, pool_kernel=k, downsample=r, hidden=8, n_layers=2)
        assert block.pool(x).shape == (5, 3, pooled)
        theta_b, theta_f = block.coefficients(x)
        assert theta_b.shape == (5, 3, nb) and theta_f.shape == (5, 3, nf)
        back, fore = block(x)
        assert back.shape == (5, 3, 64) and fore.shape == (5, 3, 16)
    # Max pooling (ceil mode keeps the tail window).
    pool = NHiTSBlock(10, 4, 1, 4, 1, 4, 1).pool
    seq = torch.tensor([[[0.0, 5, 1, 2, 9, 3, 3, 3, 7, 1]]])
    assert pool(seq).tolist() == [[[5.0, 9.0, 7.0]]]
    # Interpolation: knots at both ends, linear in between.
    theta = torch.tensor([[[0.0, 3.0]]])
    assert interpolate(theta, 4).flatten().tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert interpolate(torch.tensor([[[2.0]]]), 3).tolist() == [[[2.0, 2.0, 2.0]]]

    model = NHiTS(lookback=64, n_channels=3, horizon=16, pool_kernels=(8, 4, 1), downsample=(8, 4, 1), hidden=16)
    xb = torch.randn(4, 64, 3)
    scaled, residual, backcasts, forecasts = model.decompose(xb)
    assert len(backcasts) == 3
    assert [b.shape for b in backcasts] == [(4, 3, 64)] * 3 and [f.shape for f in forecasts] == [(4, 3, 16)] * 3
    # Doubly residual: the input is the sum of the backcasts plus what is left.
    torch.testing.assert_close(residual + sum(backcasts), scaled)
    torch.testing.assert_close(model.forecast(xb), sum(forecasts))
    # Each block sees the residual of the previous ones, not the input.
    _, f2 = model.blocks[1](scaled - backcasts[0])
    torch.testing.assert_close(f2, forecasts[1])
    assert model(xb).shape == (4,)


def test_patchtst_patching_gives_eight_patches_of_sixteen():
    import torch

    from ai.forecasters.patchtst import PatchTST, n_patches

    assert n_patches(64, 16, 8) == 8
    assert n_patches(512, 16, 8) == 64  # the paper's "64 words" at lookback 512
    model = PatchTST(lookback=64, n_channels=3, patch_len=16, stride=8)
    assert model.n_patches == 8
    x = torch.arange(2 * 3 * 64, dtype=torch.float32).reshape(2, 3, 64)
    patches = model.patchify(x)
    assert patches.shape == (2, 3, 8, 16)
    for i in range(7):
        torch.testing.assert_close(patches[:, :, i], x[:, :, 8 * i:8 * i + 16])
    torch.testing.assert_close(patches[:, :, 7, :8], x[:, :, 56:64])
    torch.testing.assert_close(patches[:, :, 7, 8:], x[:, :, 63:64].expand(2, 3, 8))  # end padding
    model.eval()
    assert model(torch.randn(5, 64, 3)).shape == (5,)


def test_patchtst_channels_are_independent_and_instance_normalized():
    import torch

    from ai.forecasters.patchtst import PatchTST

    torch.manual_seed(0)
    model = PatchTST(lookback=64, n_channels=3, d_model=16, n_heads=2, n_layers=2, d_ff=32)
    model.eval()  # batch norm on running statistics: no mixing across the batch
    x = torch.randn(4, 64, 3)
    reps, stats = model.encode(x)
    assert reps.shape == (4, 3, 16) and stats.shape == (4, 3, 2)
    changed = x.clone()
    changed[:, :, 1] = torch.randn(4, 64)
    reps2, _ = model.encode(changed)
    torch.testing.assert_close(reps2[:, [0, 2]], reps[:, [0, 2]])  # other channels untouched
    assert (reps2[:, 1] - reps[:, 1]).abs().max() > 1e-3
    # Instance normalization: a per-sample, per-channel shift and scale changes only the stats.
    scale = torch.tensor([2.0, 0.5, 10.0])
    shifted = x * scale + torch.tensor([1.0, -3.0, 0.25])
    reps3, stats3 = model.encode(shifted)
    torch.testing.assert_close(reps3, reps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stats3[..., 1] - stats[..., 1], torch.log(scale).expand(4, 3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type", ["nhits", "patchtst"])
def test_torch_models_keep_the_training_scaler_in_the_weights_under_the_saved_names(model_type):
    """weights.pt is loaded with strict=True: x_mean / x_std are keys of every saved artifact."""
    import torch

    model = create(model_type, **TINY[model_type])._build((64, 3))
    mean, std = torch.tensor([1.0, -2.0, 5.0]), torch.tensor([0.5, 2.0, 4.0])
    model.set_scaler(mean, std)
    state = model.state_dict()
    torch.testing.assert_close(state["x_mean"], mean)
    torch.testing.assert_close(state["x_std"], std)
    x = mean + std * torch.arange(64, dtype=torch.float32)[None, :, None]  # (1, 64, 3)
    torch.testing.assert_close(model.standardize(x), torch.arange(64, dtype=torch.float32).expand(1, 3, 64))
    model.init_output_bias(-0.75)
    assert model.output_layer().bias.tolist() == [-0.75]

def test_forecaster_class_table_is_complete():
    for model_type in MODEL_TYPES:
        model = create(model_type)
        assert isinstance(model, Forecaster) and model.model_type == model_type
        assert model.input_kind == KIND[model_type]
    with pytest.raises(ValueError, match="unknown model_type"):
        create("prophet")
