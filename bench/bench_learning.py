"""The learning manager: drift for the whole universe, retraining to serving, switch to decision.

    .venv/bin/python -m bench.bench_learning [--types xgboost,lightgbm,nhits,patchtst] [--days 15]

In process (no workers), on its own database (qt_bench_learning) and Redis db 12. Seeds the demo
universe (42 symbols, --days of 5m bars, the demo's planted strength), trains one champion per
type, then measures:

1. one drift check of every champion (features of the last CLM_DRIFT_WINDOW_BARS bars of the
   whole universe + each model's parts): wall time and peak traced memory (tracemalloc: numpy
   reports its buffers to it), against the same run's baseline of one inference pass over the
   same universe (the work the system already does every bar);
2. retraining to serving per model type: a manual job (train the challenger on the last
   CLM_RETRAIN_DAYS, judge it on the held-out CLM_JUDGE_BARS, promote or reject) until the
   decision is committed, after which the next inference pass serves the new champion
   (InferenceEngine reloads when the champions change); the reload itself is timed too;
3. a 3x volatility break injected into the simulator: bars until a drift check (one every
   --check-every bars) says DRIFT_DETECTED, and the time from the detection to the job's
   promotion decision.
"""
from __future__ import annotations

import argparse
import os
import time
import tracemalloc

from bench.common import machine_info, md_table, progress, setup_standalone

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/qt_bench_learning"


def _reset() -> None:
    from django.core.cache import cache

    from ai.models import ModelVersion
    from analytics.models import DriftCheck, PredictionOutcome, RetrainingJob
    from qtweb.events.models import Event, EventDelivery

    for model in (DriftCheck, RetrainingJob, PredictionOutcome, ModelVersion, EventDelivery, Event):
        model.objects.all().delete()
    cache.clear()  # Redis db 12, the benchmark's own


def _timed(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, elapsed, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="xgboost,lightgbm,nhits,patchtst")
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--check-every", type=int, default=6)
    args = ap.parse_args()
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    setup_standalone(DATABASE_URL)

    from django.conf import settings
    from django.core.management import call_command

    from ai.inference import InferenceEngine, run_inference
    from analytics.learning import jobs
    from analytics.learning.monitor import check_drift
    from trading.simulator.service import advance, regime_switch_schedule, seed_history, simulator_now_ms

    _reset()
    progress(f"seeding {args.days} days of the demo universe")
    seed_history(days=args.days, seed=settings.SIM_SEED, force=True)
    progress(f"training the champions as setup_demo does: {types}")
    with open(os.devnull, "w") as quiet:
        call_command("train_models", "--models", ",".join(types), "--sample-every", "6", "--max-epochs",
                     str(settings.CLM_NEURAL_MAX_EPOCHS), "--promote", "always", stdout=quiet)

    progress("1. drift check of every champion vs one inference pass")
    run_inference(publish=False)  # warm: models loaded, imports done
    _, base_s, base_mb = _timed(lambda: run_inference(publish=False))
    checks, drift_s, drift_mb = _timed(check_drift)
    rows = [["one inference pass (baseline)", f"{base_s:.2f}", f"{base_mb:.0f}", "1.00"],
            [f"drift check, {len(checks)} champions", f"{drift_s:.2f}", f"{drift_mb:.0f}", f"{drift_s / base_s:.2f}"]]
    print("\n" + md_table(["run", "seconds", "peak traced MiB", "time / baseline"], rows))
    print("drift scores:", {c.model_type: round(c.drift_score, 3) for c in checks})

    progress("2. retraining to serving, per model type")
    eng = InferenceEngine()
    eng.refresh()
    rows = []
    for t in types:
        job = jobs.request_retraining(model_type=t, trigger="manual", reason="benchmark")
        t0 = time.perf_counter()
        done = jobs.run_job(job.pk)
        decided = time.perf_counter() - t0
        _, reload_s, _ = _timed(eng.refresh)
        rows.append([t, done.status, done.decision or done.error[:60], f"{decided:.1f}", f"{reload_s:.2f}",
                     f"{done.champion_score:+.2f}" if done.champion_score is not None else "-",
                     f"{done.challenger_score:+.2f}" if done.challenger_score is not None else "-"])
        progress(f"   {t}: {done.status} {done.decision} in {decided:.1f}s")
    print("\n" + md_table(["type", "job", "decision", "request -> decision s", "next pass reload s",
                           "champion bps", "challenger bps"], rows))

    progress("3. a 3x volatility break: bars to DRIFT_DETECTED, then to the decision")
    from analytics.models import RetrainingJob

    RetrainingJob.objects.all().delete()
    settings.CLM_DRIFT_COOLDOWN_MINUTES = 0
    switch_at = (simulator_now_ms() // 300_000 + 1) * 300_000
    regime_switch_schedule(at_open_time_ms=switch_at, regime="high_vol", vol_multiplier=3.0)
    bars, detected, far = 0, None, int(time.time() * 1000) + 30 * 86_400_000
    while bars < 600 and detected is None:
        advance(args.check_every, now_ms=far)
        bars += args.check_every
        detected = next((c for c in check_drift() if c.detected), None)
    if detected is None:
        print("\nno drift detected within 600 bars")
        return
    print(f"\nswitch -> first DRIFT_DETECTED: {bars} bars ({detected.model_type}, score {detected.drift_score:.3f}, "
          f"checks every {args.check_every} bars)")
    rows = []
    for _ in types:  # every type's drift job, one after another as the learning worker runs them
        checks = check_drift()  # the other types cross the threshold too (or not)
        for c in checks:
            if c.detected and c.job_id and c.job.status == "queued":
                t0 = time.perf_counter()
                done = jobs.run_job(c.job_id)
                rows.append([c.model_type, f"{c.drift_score:.3f}", f"{time.perf_counter() - t0:.1f}", done.status,
                             done.decision or done.error[:60], f"{done.champion_score:+.2f}"
                             if done.champion_score is not None else "-", f"{done.challenger_score:+.2f}"])
        advance(args.check_every, now_ms=far)
        bars += args.check_every
    print(md_table(["type", "drift score", "job: detection -> decision s", "job", "decision", "champion bps",
                    "challenger bps"], rows))
    print("\nmachine:", machine_info())


if __name__ == "__main__":
    main()
