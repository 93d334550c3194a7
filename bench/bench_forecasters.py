"""The four forecasters: training time on ~100k samples and standalone predict latency (one
sample, a 50-sample batch) on one thread, on synthetic data of the feature contract's shapes
(X_tab (n, 20) float32; X_seq (n, 64, 3) float32; y 0/1 with a weak learnable signal).

    .venv/bin/python -m bench.bench_forecasters                  # 100k train / 20k validation
    .venv/bin/python -m bench.bench_forecasters --quick          # 20k / 5k, fewer repeats
    .venv/bin/python -m bench.bench_forecasters --train-threads 1

Training uses --train-threads (default: the usable cores) and each model's default parameters.
Latency is measured on the artifacts reloaded from disk (what an inference worker serves), with
OMP/MKL/OpenBLAS threads 1, torch.set_num_threads(1) and the boosters' predict threads 1, each
call going through predict_proba_up (input check + model + calibration). "all four, in turn" is
the four calls back to back in one timed loop: the floor for an ensemble pass (no voting).
The last figure is the RSS of a fresh process with the four artifacts loaded and one prediction
each made. Needs no database.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - the thread variables must be set before numpy / torch load
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import ROOT, machine_info, md_table, progress, summarize, time_calls  # noqa: E402

N_FEATURES, LOOKBACK, N_CHANNELS = 20, 64, 3
FEATURE_VERSION, FEATURE_HASH = "bench-synthetic-1", "bench"
T0_MS, BAR_MS = 1_767_225_600_000, 300_000


def synthetic(n: int, seed: int):
    """Independent samples of the contract's shapes with a weak signal (about 0.57-0.6 accuracy
    is reachable), about 45 % positives as with a fee band."""
    rng = np.random.default_rng(seed)
    X_tab = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    z = 0.35 * X_tab[:, 0] - 0.25 * X_tab[:, 1] + 0.15 * X_tab[:, 2] * X_tab[:, 3] + rng.logistic(size=n)
    y_tab = (z > 0.2).astype(np.int8)
    X_seq = rng.normal(size=(n, LOOKBACK, N_CHANNELS)).astype(np.float32)
    drift = rng.normal(0.0, 0.12, size=n)
    X_seq[:, -16:, 0] += drift[:, None].astype(np.float32)
    X_seq[:, :, 0] *= 0.002  # 5m log returns
    X_seq[:, :, 2] = np.abs(X_seq[:, :, 2]) * 0.001  # a range-like channel
    y_seq = (drift + rng.normal(0.0, 0.12, size=n) > 0.02).astype(np.int8)
    return X_tab, y_tab, X_seq, y_seq


def train_all(n_train: int, n_val: int, threads: int, out_dir: Path, seed: int) -> tuple[list, dict]:
    from ai.forecasters import MODEL_TYPES, create, training_window

    progress(f"generating {n_train:,} + {n_val:,} synthetic samples")
    Xt_tab, yt_tab, Xt_seq, yt_seq = synthetic(n_train, seed)
    Xv_tab, yv_tab, Xv_seq, yv_seq = synthetic(n_val, seed + 1)
    window = training_window(T0_MS + BAR_MS * np.arange(n_train, dtype=np.int64))
    rows, artifacts = [], {}
    for model_type in MODEL_TYPES:
        threads_param = {"num_threads": threads} if model_type in ("nhits", "patchtst") else {"n_jobs": threads}
        model = create(model_type, **threads_param)
        data = {"tab": (Xt_tab, yt_tab, Xv_tab, yv_tab), "seq": (Xt_seq, yt_seq, Xv_seq, yv_seq)}[model.input_kind]
        progress(f"training {model_type} on {n_train:,} samples, {threads} thread(s)")
        t0 = time.perf_counter()
        metrics = model.fit(*data, seed=seed)
        seconds = time.perf_counter() - t0
        path = out_dir / model_type
        model.save(path, {"feature_version": FEATURE_VERSION, "feature_hash": FEATURE_HASH,
                          "training_window": window, "version": "bench"})
        size = sum(f.stat().st_size for f in path.iterdir())
        if "epochs" in metrics:
            stop = f"{metrics['epochs']} epochs (best {metrics['best_epoch']}), {metrics['n_parameters']:,} params"
            per_round = 1000 * seconds / metrics["epochs"]
        else:
            rounds = metrics.get("rounds", metrics["best_iteration"])
            stop = f"{metrics['best_iteration']} trees kept"
            per_round = float("nan") if not rounds else 1000 * seconds / rounds
        progress(f"  {model_type}: {seconds:.1f} s, val acc {metrics['accuracy']:.3f}, auc {metrics['auc']:.3f}, "
                 f"{stop}")
        rows.append((model_type, f"{seconds:,.1f}", stop, per_round, metrics["accuracy"], metrics["majority_accuracy"],
                     metrics["auc"], metrics["log_loss"], metrics["ece"], metrics["calibration_method"],
                     f"{size / 1024:,.0f}"))
        artifacts[model_type] = path
    return rows, artifacts


def latency(artifacts: dict, n_one: int, n_batch: int, seed: int) -> list:
    import torch

    from ai.forecasters import load_forecaster

    torch.set_num_threads(1)
    X_tab, _, X_seq, _ = synthetic(64, seed + 2)
    models = {}
    for model_type, path in artifacts.items():
        t0 = time.perf_counter()
        models[model_type] = load_forecaster(path, FEATURE_VERSION, FEATURE_HASH)
        progress(f"loaded {model_type} in {(time.perf_counter() - t0) * 1000:.1f} ms")

    def inputs(model, n):
        return X_tab[:n] if model.input_kind == "tab" else X_seq[:n]

    rows = []
    parts = {1: 0.0, 50: 0.0}
    for model_type, model in models.items():
        row = [model_type]
        for n, calls in ((1, n_one), (50, n_batch)):
            X = inputs(model, n)
            s = summarize(time_calls(lambda m=model, x=X: m.predict_proba_up(x), calls, warmup=50))
            row += [s["p50"], s["p99"], s["mean"]]
            parts[n] += s["p50"]
        rows.append(tuple(row))
        progress(f"latency {model_type}: 1 row p50 {row[1]:.3f} ms, 50 rows p50 {row[4]:.3f} ms")
    row = ["all four, in turn"]
    for n, calls in ((1, n_one), (50, n_batch)):
        batch = [(m, inputs(m, n)) for m in models.values()]

        def ensemble_pass(batch=batch):
            for m, x in batch:
                m.predict_proba_up(x)

        s = summarize(time_calls(ensemble_pass, calls, warmup=20))
        row += [s["p50"], s["p99"], s["mean"]]
    rows.append(tuple(row))
    rows.append(("sum of the four p50s", parts[1], float("nan"), float("nan"), parts[50], float("nan"), float("nan")))
    return rows


_RSS_CHILD = """
import os, sys, json
for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[v] = "1"
import numpy as np, psutil, torch
torch.set_num_threads(1)
from ai.forecasters import load_forecaster
before = psutil.Process().memory_info().rss
paths = json.loads(sys.argv[1])
for kind, path in paths.items():
    m = load_forecaster(path, sys.argv[2], sys.argv[3])
    shape = (50, *m.sample_shape)
    m.predict_proba_up(np.zeros(shape, dtype=np.float32))
print(json.dumps({"rss_mib": psutil.Process().memory_info().rss / 2**20, "before_mib": before / 2**20}))
"""


def loaded_rss(artifacts: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, json.dumps({k: str(v) for k, v in artifacts.items()}),
                          FEATURE_VERSION, FEATURE_HASH], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k training samples, fewer latency repeats")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--train-threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    threads = args.train_threads or cores
    n_train = args.n_train or (20_000 if args.quick else 100_000)
    n_val = max(n_train // 5, 2000)
    n_one, n_batch = (300, 200) if args.quick else (3000, 1000)

    from ai.forecasters.artifacts import library_versions

    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="qt-bench-forecasters-") as tmp:
        train_rows, artifacts = train_all(n_train, n_val, threads, Path(tmp), args.seed)
        lat_rows = latency(artifacts, n_one, n_batch, args.seed)
        rss = loaded_rss(artifacts)

    libs = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    print(f"## Forecasters ({info['date_utc']})\n")
    print(f"{info['cpu_model']}, {info['cores']} usable cores, load at start {info['load_avg_at_start']}; {libs}; "
          "latency on one thread (OMP/MKL/OpenBLAS 1, torch.set_num_threads(1), boosters' predict threads 1).\n")
    print(f"### Training: {n_train:,} train / {n_val:,} validation samples, {threads} thread(s)\n")
    print(md_table(["model", "train s", "stopped at", "ms per round/epoch", "val acc", "majority", "val AUC",
                    "val log-loss", "val ECE", "calibration", "artifact KiB"], train_rows))
    print("\nSynthetic data with a weak signal; the validation metrics only show the models learn it "
          "(calibrated figures are out-of-fold on the validation set).\n")
    print(f"### predict_proba_up latency, one thread, ms ({n_one} calls for 1 row, {n_batch} for 50 rows)\n")
    print(md_table(["model", "1 row p50", "1 row p99", "1 row mean", "50 rows p50", "50 rows p99", "50 rows mean"],
                   lat_rows))
    print(f"\nRSS of a fresh process with the four artifacts loaded and one 50-row prediction each: "
          f"{rss['rss_mib']:.0f} MiB ({rss['before_mib']:.0f} MiB after importing numpy, psutil and torch).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
