"""AI benchmark: training time per model on the simulated demo market, ensemble inference
latency (1 symbol, 50-symbol batch) against each model standalone, and the RSS of a process
with all four champions loaded.

    .venv/bin/python -m bench.bench_inference [--days 20] [--sample-every 4] [-n 200]

Own database (qt_bench_inf; BENCH_INF_DATABASE_URL overrides), models under a temp dir. All
timings on one thread (torch, OpenMP and BLAS pinned to 1), p50/p99 over n calls.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import md_table, percentile, progress, setup_standalone, time_calls  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_INF_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/qt_bench_inf")
TYPES = ("xgboost", "lightgbm", "nhits", "patchtst")



def _ms(v: list[float], p: float) -> str:
    return f"{percentile(v, p) * 1000:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--sample-every", type=int, default=4)
    ap.add_argument("-n", type=int, default=200)
    args = ap.parse_args()
    models_dir = tempfile.mkdtemp(prefix="qt-bench-models-")
    os.environ["MODEL_ARTIFACTS_DIR"] = models_dir
    setup_standalone(DATABASE_URL)
    import torch
    from django.conf import settings

    torch.set_num_threads(1)
    settings.MODEL_ARTIFACTS_DIR = models_dir
    from ai import inference
    from ai.ensemble import vote
    from ai.features.compute import INFERENCE_BARS
    from ai.features.dataset import bars_from_db, dataset_from_db, latest_rows
    from ai.models import ModelVersion
    from ai.training import train_and_register
    from trading.simulator.service import seed_history

    ModelVersion.objects.all().delete()
    progress(f"seeding {args.days} days of the demo market")
    seed_history(days=args.days, seed=42, force=True)
    ds = dataset_from_db("paper", "5m", sample_every=args.sample_every)
    progress(f"dataset: {len(ds.y):,} samples x {len(ds.feature_names)} features; training the four models")
    train_rows = []
    for t in TYPES:
        t0 = time.perf_counter()
        (outcome,) = train_and_register(ds, model_types=[t], promote="always")
        m = outcome.metrics
        train_rows.append((t, f"{time.perf_counter() - t0:.1f}", m.get("epochs") or m.get("rounds") or m.get(
            "best_iteration", "-"), f"{m['accuracy']:.3f}", f"{m['majority_accuracy']:.3f}", f"{m['log_loss']:.4f}"))
        progress(f"trained {t}")

    eng = inference.InferenceEngine()
    eng.refresh()
    assert len(eng.serving) == 4, eng.problems
    bars = bars_from_db("paper", "5m", None, INFERENCE_BARS)
    rows = latest_rows(bars)
    m = len(rows.symbols)
    idx50 = np.resize(np.arange(m), 50)  # 42 demo symbols, tiled to a 50-symbol batch
    weights = eng.weights()

    class Batch:
        def __init__(self, ix):
            self.X_tab, self.X_seq = rows.X_tab[ix], rows.X_seq[ix]

    b1, b50 = Batch(idx50[:1]), Batch(idx50)
    results = []
    for label, batch, size in (("1 symbol", b1, 1), ("50-symbol batch", b50, 50)):
        parts = {}
        for s in eng.serving:
            x = batch.X_tab if s.forecaster.input_kind == "tab" else batch.X_seq
            parts[s.version.model_type] = time_calls(lambda f=s.forecaster, x=x: f.predict_proba_up(x), args.n)

        def ensemble(batch=batch, size=size):
            probs, _, _ = eng.predict(batch)
            for i in range(size):
                vote({t: float(p[i]) for t, p in probs.items()}, weights)

        ens = time_calls(ensemble, args.n)
        sum_parts = sum(percentile(v, 50) for v in parts.values())
        results.append((label, parts, ens, sum_parts))
    feats = time_calls(lambda: latest_rows(bars), max(20, args.n // 10), warmup=2)

    rss = subprocess.run(
        [sys.executable, "-c",
         "import os,psutil,django;os.environ.setdefault('DJANGO_SETTINGS_MODULE','qtweb.settings.test');"
         "django.setup();from django.conf import settings;"
         "settings.MODEL_ARTIFACTS_DIR=os.environ['MODEL_ARTIFACTS_DIR'];"
         "from ai.inference import InferenceEngine;e=InferenceEngine();e.refresh();"
         "print(len(e.serving), round(psutil.Process().memory_info().rss/2**20))"],
        capture_output=True, text=True, env={**os.environ, "DATABASE_URL": DATABASE_URL})
    print(f"\nDataset: {len(ds.y):,} samples ({args.days} days x {m} symbols of 5m, one bar in {args.sample_every}), "
          f"{len(ds.feature_names)} features, horizon {ds.horizon} bars.\n")
    print(md_table(["model", "training s", "epochs/rounds", "val accuracy", "majority class", "val log-loss"],
                   train_rows))
    print()
    table = []
    for label, parts, ens, sum_parts in results:
        for t, v in parts.items():
            table.append((label, t, _ms(v, 50), _ms(v, 99)))
        table.append((label, "**ensemble (4 models + vote)**", _ms(ens, 50), _ms(ens, 99)))
        table.append((label, "sum of the four standalone p50s", f"{sum_parts * 1000:.2f}", ""))
        table.append((label, "ratio ensemble / sum of parts (p50)", f"{percentile(ens, 50) / sum_parts:.2f}x", ""))
    table.append((f"{m} symbols", "features (latest_rows over 256 bars each)", _ms(feats, 50), _ms(feats, 99)))
    print(md_table(["batch", "what", "p50 ms", "p99 ms"], table))
    print(f"\nRSS of a fresh process with all four champions loaded: {rss.stdout.strip() or rss.stderr[-300:]} "
          "(models, MiB)")


if __name__ == "__main__":
    main()
