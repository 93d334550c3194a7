"""Walk-forward (rolling) out-of-sample evaluation with costs, against baselines. Pure numpy.

For each fold of `ai.features.splits.walk_forward` (rolling: every fold trains on a window as
long as the first fold's, purged so no training label reaches its test window):

1. each requested model is fitted on the fold's training samples whose move is beyond the fee
   band (the same labels `train_models` uses), with an inner purged train/validation split for
   early stopping and calibration, and predicts P(up) for EVERY test sample;
2. the ensemble (`ai.ensemble.vote`) combines them with weights from a `PerformanceTracker`
   that has seen only the outcomes of EARLIER folds (fold 0 uses the prior weight); the fold's
   outcomes are recorded after its vote;
3. every model, the ensemble and the baselines trade the same grid.

Trading rule. The test samples are all bars with a known future (built with band 0, so the
bars with small moves are traded too: selecting bars by their future move would be lookahead).
Positions are non-overlapping: from each test window's first timestamp, one decision every
`horizon` bars (timestamps at least `horizon` bars apart), held for the label horizon. Per
symbol: long (+1) on BUY, short (-1) on SELL, flat on HOLD. The portfolio gives each symbol
present at a decision time an equal share of capital (rebalancing between periods is free:
a simplification). Costs (taker fee + slippage, per side, as a fraction of the notional
traded) are charged on every change of position: |new - old| when the next period follows
directly, closing (|pos|) when the symbol's next decision is not contiguous (gaps between
test windows, the end). Returns are simple: pos * (exp(fwd_log_return) - 1).

Classification metrics (accuracy, log-loss, Brier, calibration deciles) are on the test
samples whose move is beyond the band, i.e. on the labels the models were trained to predict.

Baselines, on the same decision grid and costs: buy-and-hold (every symbol long, equal
weight: positions carried within a test window, so only entry and exit are paid), momentum
(sign of the 12-bar return known at the decision bar, feature `ret_12`), random (seeded coin
flip long/short).

Intervals (`significance`). Every strategy trades the same decision periods, so each has one
net return per period. A circular block bootstrap (blocks of about n^(1/3) periods, which keeps
the volatility clustering of neighbouring periods) gives a 95 % interval of the ensemble's mean
net return per period (its excess return over holding cash) and of its mean excess over each
baseline (paired by period). An edge after costs is claimed only when the ensemble's interval
lies above zero; `beats_beyond_noise` says per baseline whether the excess interval does. The
accuracy is tested against the majority-class rate with a one-sided binomial test. On a null
market (the simulator at SIM_ALPHA 0) the same pipeline must claim nothing: an edge there is a
leak (ai/tests/test_evaluation.py checks both sides).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ai.ensemble import DEFAULT_MIN_CONFIDENCE, PerformanceTracker, vote
from ai.features.labels import DEFAULT_SLIPPAGE_RATE, DEFAULT_TAKER_FEE_RATE

BARS_PER_YEAR_5M = 365 * 24 * 12  # crypto trades around the clock
ENSEMBLE = "ensemble"
BASELINES = ("buy_and_hold", "momentum", "random")
PROB_CLIP = 1e-6


@dataclass(frozen=True)
class Costs:
    taker_fee_rate: float = DEFAULT_TAKER_FEE_RATE
    slippage_rate: float = DEFAULT_SLIPPAGE_RATE

    @property
    def per_side(self) -> float:
        return self.taker_fee_rate + self.slippage_rate


@dataclass
class EvaluationConfig:
    models: tuple[str, ...] = ("xgboost", "lightgbm", "nhits", "patchtst")
    n_folds: int = 4
    seed: int = 42
    model_params: dict[str, dict] = field(default_factory=dict)
    costs: Costs = field(default_factory=Costs)
    band: float = 0.002  # training-label band (the fee band)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    validation_fraction: float = 0.2
    bar_ms: int = 300_000
    mode: str = "rolling"  # or "expanding" (every fold trains on everything before its purge)


# --- cost accounting ---------------------------------------------------------------------------


def decision_grid(t_ms: np.ndarray, horizon_bars: int, bar_ms: int) -> np.ndarray:
    """Sorted timestamps at least `horizon_bars` bars apart, greedily from the first."""
    kept, last = [], None
    step = horizon_bars * bar_ms
    for t in np.unique(np.asarray(t_ms, dtype=np.int64)):
        if last is None or t >= last + step:
            kept.append(int(t))
            last = int(t)
    return np.array(kept, dtype=np.int64)


def trade(t_ms: np.ndarray, symbol: np.ndarray, fwd_log_return: np.ndarray, position: np.ndarray, *,
          horizon_bars: int, bar_ms: int, cost_per_side: float, periods_per_year: float) -> dict[str, Any]:
    """Net equity of per-symbol positions, each held `horizon_bars` from its decision time.

    Inputs are decision samples (one per symbol and decision time). A symbol's decision is
    contiguous with its previous one when it comes exactly `horizon_bars` bars later; then
    only the change |pos - prev| is paid, otherwise the previous position was closed (paid
    in its own period) and the new one opened. Portfolio return per decision time = mean over
    the symbols present of pos * (exp(fwd) - 1) - cost_per_side * traded."""
    t = np.asarray(t_ms, dtype=np.int64)
    sym = np.asarray(symbol).astype(str)
    fwd = np.asarray(fwd_log_return, dtype=np.float64)
    pos = np.asarray(position, dtype=np.float64)
    n = len(t)
    if not (len(sym) == len(fwd) == len(pos) == n):
        raise ValueError("t_ms, symbol, fwd_log_return and position must have the same length")
    if n == 0:
        return _trading_summary(np.empty(0, np.int64), np.empty(0), np.empty(0), 0, 0, periods_per_year)
    step = horizon_bars * bar_ms
    order = np.lexsort((t, sym))  # by symbol, then time
    traded = np.zeros(n)
    for s in np.unique(sym):
        idx = order[sym[order] == s]
        ts, ps = t[idx], pos[idx]
        contig_prev = np.zeros(len(idx), bool)
        contig_prev[1:] = np.diff(ts) == step
        prev = np.where(contig_prev, np.concatenate([[0.0], ps[:-1]]), 0.0)
        contig_next = np.zeros(len(idx), bool)
        contig_next[:-1] = contig_prev[1:]
        traded[idx] = np.abs(ps - prev) + np.where(contig_next, 0.0, np.abs(ps))
    gross = pos * np.expm1(fwd)
    net = gross - cost_per_side * traded
    times, inv = np.unique(t, return_inverse=True)
    counts = np.bincount(inv)
    period_ret = np.bincount(inv, weights=net) / counts
    period_turnover = np.bincount(inv, weights=traded) / counts
    active = pos != 0
    hits = int(((gross > 0) & active).sum())
    return _trading_summary(times, period_ret, period_turnover, hits, int(active.sum()), periods_per_year)


def _trading_summary(times, period_ret, period_turnover, hits, n_trades, periods_per_year) -> dict[str, Any]:
    equity = np.cumprod(1.0 + period_ret) if len(period_ret) else np.empty(0)
    if len(period_ret) > 1 and period_ret.std(ddof=1) > 0:
        sharpe = float(period_ret.mean() / period_ret.std(ddof=1) * math.sqrt(periods_per_year))
    else:
        sharpe = None
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))
    drawdown = 1.0 - np.concatenate([[1.0], equity]) / peak
    return {
        "period_returns": [float(x) for x in period_ret],
        "total_return": float(equity[-1] - 1.0) if len(equity) else 0.0,
        "sharpe": sharpe,
        "max_drawdown": float(drawdown.max()),
        "turnover": float(period_turnover.sum()),
        "hit_rate": hits / n_trades if n_trades else None,
        "n_trades": n_trades,
        "n_periods": len(period_ret),
        "equity": {"t_ms": [int(x) for x in times], "equity": [float(x) for x in equity]},
    }


# --- intervals ---------------------------------------------------------------------------------


def bootstrap_mean_interval(x, *, n_boot: int = 2000, level: float = 0.95, block: int | None = None,
                            seed: int = 0) -> dict[str, Any]:
    """{mean, lo, hi, n, block}: a circular block bootstrap interval of the mean of `x`."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 2:
        return {"mean": float(x.mean()) if n else None, "lo": None, "hi": None, "n": n, "block": None}
    block = block or max(1, round(n ** (1 / 3)))
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n] % n
    means = x[idx].mean(axis=1)
    tail = (1 - level) / 2
    return {"mean": float(x.mean()), "lo": float(np.quantile(means, tail)), "hi": float(np.quantile(means, 1 - tail)),
            "n": n, "block": int(block)}


def accuracy_test(accuracy: float | None, majority: float | None, n: int) -> dict[str, Any]:
    """One-sided binomial test of `accuracy` > `majority` on n labels."""
    from scipy.stats import binomtest

    if accuracy is None or majority is None or n == 0:
        return {"accuracy": accuracy, "majority": majority, "n": n, "p_value": None, "above_majority": False}
    k = round(accuracy * n)
    p = float(binomtest(k, n, min(max(majority, 1e-9), 1 - 1e-9), alternative="greater").pvalue)
    return {"accuracy": accuracy, "majority": majority, "n": n, "p_value": p, "above_majority": p < 0.05}


def significance(ensemble: Mapping[str, Any], baselines: Mapping[str, Any], cls: Mapping[str, Any], *,
                 seed: int = 0) -> dict[str, Any]:
    """The ensemble's net return interval, its excess over each baseline, its accuracy test, and
    whether that is an edge after costs (the net return interval above zero)."""
    ens = np.asarray(ensemble["period_returns"])
    net = bootstrap_mean_interval(ens, seed=seed)
    excess = {}
    for name, b in baselines.items():
        other = np.asarray(b["trading"]["period_returns"])
        excess[name] = bootstrap_mean_interval(ens - other, seed=seed) if len(other) == len(ens) else None
    acc = accuracy_test(cls.get("accuracy"), cls.get("majority_accuracy"), int(cls.get("n") or 0))
    def above(iv) -> bool:
        return iv is not None and iv["lo"] is not None and iv["lo"] > 0

    return {"net_return_per_period": net, "excess_per_period": excess, "accuracy": acc,
            "beats_beyond_noise": {name: above(iv) for name, iv in excess.items()}, "edge": above(net)}


# --- classification metrics --------------------------------------------------------------------


def classification(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    p = np.clip(np.asarray(p, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        return {"n": 0, "accuracy": None, "log_loss": None, "brier": None, "base_rate": None,
                "majority_accuracy": None, "calibration": []}
    base = float(y.mean())
    return {
        "n": len(y),
        "accuracy": float(((p >= 0.5) == (y == 1)).mean()),
        "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
        "brier": float(((p - y) ** 2).mean()),
        "base_rate": base,
        "majority_accuracy": max(base, 1 - base),
        "calibration": calibration_table(p, y),
    }


def calibration_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Deciles of predicted probability: [lo, hi), count, mean predicted, observed up rate."""
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for i in range(n_bins):
        m = b == i
        rows.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(m.sum()),
                     "mean_predicted": float(p[m].mean()) if m.any() else None,
                     "observed_up": float(y[m].mean()) if m.any() else None})
    return rows


def actions_to_positions(p: np.ndarray, threshold: float) -> np.ndarray:
    """vote()'s rule: BUY (+1) at p >= threshold, SELL (-1) at p <= 1 - threshold, else HOLD (0)."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p >= threshold, 1.0, np.where(p <= 1.0 - threshold, -1.0, 0.0))


# --- baselines ---------------------------------------------------------------------------------


def baseline_positions(name: str, *, n: int, ret_12: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    if name == "buy_and_hold":
        return np.ones(n)
    if name == "momentum":
        if ret_12 is None:
            raise ValueError("momentum needs the 12-bar return")
        return np.sign(np.asarray(ret_12, dtype=np.float64))
    if name == "random":
        return np.where(np.random.default_rng(seed).random(n) < 0.5, -1.0, 1.0)
    raise ValueError(f"unknown baseline {name!r}")


# --- the evaluation ----------------------------------------------------------------------------


def ensemble_weights_by_fold(fold_outcomes: list[Mapping[str, tuple[np.ndarray, np.ndarray]]],
                             models: Iterable[str]) -> list[dict[str, float]]:
    """Weights used in each fold: fold k's from a tracker fed folds 0..k-1 only.
    fold_outcomes[k][model] = (P(up), went_up) on fold k's test samples, in time order."""
    models = list(models)
    tracker = PerformanceTracker()
    out = []
    for outcomes in fold_outcomes:
        out.append(tracker.weights(models))
        for m in models:
            if m in outcomes:
                p, y = outcomes[m]
                for pi, yi in zip(np.asarray(p, float), np.asarray(y), strict=True):
                    tracker.record(m, float(pi), bool(yi))
    return out


def _rolling_layout(t_ms: np.ndarray, horizon: int, n_folds: int) -> int:
    """The first fold's training length (timestamps) under walk_forward's default test size."""
    n_grid = len(np.unique(t_ms))
    test = (n_grid - horizon - horizon * (n_folds - 1)) // (n_folds + 1)
    return max(1, n_grid - n_folds * test - (n_folds - 1) * horizon - horizon)


ProgressFn = Callable[[int, str], None]


def evaluate(ds, config: EvaluationConfig, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The walk-forward evaluation of `ds` (a Dataset built with band=0, see the module doc)."""
    from ai.features.splits import train_validation_split, walk_forward
    from ai.forecasters import create

    h = ds.horizon
    cost = config.costs.per_side
    periods_per_year = BARS_PER_YEAR_5M * (300_000 / config.bar_ms) / h
    names = list(ds.feature_names)
    ret12 = ds.X_tab[:, names.index("ret_12")] if "ret_12" in names else None
    decisive = np.abs(ds.fwd_log_return) > config.band
    train_size = _rolling_layout(ds.t_ms, h, config.n_folds)
    if config.mode not in ("rolling", "expanding"):
        raise ValueError(f"mode must be rolling or expanding, got {config.mode!r}")
    folds = list(walk_forward(ds.t_ms, ds.label_end_ms, horizon_bars=h, n_splits=config.n_folds, mode=config.mode,
                              train_size=train_size, min_train_size=10))
    models = list(config.models)
    outcomes_so_far: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    keys = [*models, ENSEMBLE]
    probs = {k: [] for k in keys}  # per fold, P(up) on every test sample
    test_parts, fold_rows = [], []
    for k, (train_idx, test_idx) in enumerate(folds):
        tr = train_idx[decisive[train_idx]]
        inner_tr, inner_val = train_validation_split(ds.t_ms[tr], ds.label_end_ms[tr], horizon_bars=h,
                                                     validation_fraction=config.validation_fraction)
        tr_fit, tr_val = tr[inner_tr], tr[inner_val]
        # earlier folds only: the tracker replays folds 0..k-1 (this fold's slot is empty)
        weights = ensemble_weights_by_fold([*outcomes_so_far, {}], models)[-1]
        fold_p = {}
        for m in models:
            model = create(m, **config.model_params.get(m, {}))
            X = ds.X_tab if model.input_kind == "tab" else ds.X_seq
            model.fit(X[tr_fit], ds.y[tr_fit], X[tr_val], ds.y[tr_val], seed=config.seed + k)
            fold_p[m] = model.predict_proba_up(X[test_idx])
            if progress:
                progress(k, m)
        votes = [vote({m: float(fold_p[m][i]) for m in models}, weights,
                      min_confidence_threshold=config.min_confidence) for i in range(len(test_idx))]
        fold_p[ENSEMBLE] = np.array([v.probability_up for v in votes])
        dec = decisive[test_idx]
        y_dec = ds.y[test_idx][dec]
        # outcomes become known after the fold: they weigh the next folds
        outcomes_so_far.append({m: (fold_p[m][dec], y_dec) for m in models})
        for key in keys:
            probs[key].append(fold_p[key])
        test_parts.append(test_idx)
        fold_rows.append({
            "fold": k,
            "train_start_ms": int(ds.t_ms[tr].min()), "train_end_ms": int(ds.t_ms[tr].max()),
            "test_start_ms": int(ds.t_ms[test_idx].min()), "test_end_ms": int(ds.t_ms[test_idx].max()),
            "n_train": int(len(tr_fit)), "n_validation": int(len(tr_val)), "n_test": int(len(test_idx)),
            "n_test_decisive": int(dec.sum()),
            "weights": {m: round(float(w), 6) for m, w in (votes[0].weights if votes else weights).items()},
            "raw_weights": {m: round(float(w), 6) for m, w in weights.items()},
            "accuracy": {key: (float(((fold_p[key][dec] >= 0.5) == (y_dec == 1)).mean()) if dec.any() else None)
                         for key in keys},
        })

    test_idx = np.concatenate(test_parts)
    p_all = {key: np.concatenate(probs[key]) for key in keys}
    dec = decisive[test_idx]
    grid = set(decision_grid_by_window(ds.t_ms, test_parts, h, config.bar_ms).tolist())
    on_grid = np.array([t in grid for t in ds.t_ms[test_idx]], dtype=bool)
    g_idx = test_idx[on_grid]

    def run(positions: np.ndarray) -> dict[str, Any]:
        return trade(ds.t_ms[g_idx], ds.symbol[g_idx], ds.fwd_log_return[g_idx], positions, horizon_bars=h,
                     bar_ms=config.bar_ms, cost_per_side=cost, periods_per_year=periods_per_year)

    results = {}
    for key in keys:
        results[key] = {
            "classification": classification(p_all[key][dec], ds.y[test_idx][dec]),
            "per_fold_accuracy": [{"fold": f["fold"], "test_start_ms": f["test_start_ms"],
                                   "accuracy": f["accuracy"][key]} for f in fold_rows],
            "trading": run(actions_to_positions(p_all[key][on_grid], config.min_confidence)),
        }
    baselines = {}
    for name in BASELINES:
        if name == "momentum" and ret12 is None:
            continue
        pos = baseline_positions(name, n=len(g_idx), ret_12=None if ret12 is None else ret12[g_idx],
                                 seed=config.seed)
        baselines[name] = {"trading": run(pos)}
    return {
        "config": {
            "models": models, "n_folds": config.n_folds, "seed": config.seed, "model_params": config.model_params,
            "taker_fee_rate": config.costs.taker_fee_rate, "slippage_rate": config.costs.slippage_rate,
            "band": config.band, "min_confidence": config.min_confidence, "horizon_bars": h,
            "bar_ms": config.bar_ms, "mode": config.mode,
            "rolling_train_bars": train_size if config.mode == "rolling" else None,
            "trading_rule": (f"one decision per symbol every {h} bars (non-overlapping), held {h} bars; "
                             f"long on BUY, short on SELL, flat on HOLD; costs {cost:.4%} per side on every "
                             "change of position"),
        },
        "dataset": {"n_samples": len(ds), "n_symbols": len(set(ds.symbol.tolist())),
                    "feature_version": ds.feature_version, "feature_hash": ds.feature_hash,
                    "excluded": ds.excluded, "n_test": int(len(test_idx)), "n_test_decisive": int(dec.sum()),
                    "n_decisions": int(len(g_idx))},
        "folds": fold_rows,
        "models": {m: results[m] for m in models},
        "ensemble": results[ENSEMBLE],
        "baselines": baselines,
        "significance": (sig := significance(results[ENSEMBLE]["trading"], baselines,
                                             results[ENSEMBLE]["classification"], seed=config.seed)),
        "verdict": verdict(results, baselines, sig),
    }


def decision_grid_by_window(t_ms: np.ndarray, test_parts: list[np.ndarray], horizon: int, bar_ms: int) -> np.ndarray:
    """Each test window's own decision grid, starting at its first timestamp."""
    grids = [decision_grid(t_ms[idx], horizon, bar_ms) for idx in test_parts if len(idx)]
    return np.concatenate(grids) if grids else np.empty(0, np.int64)


def verdict(results: Mapping[str, Any], baselines: Mapping[str, Any],
            sig: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Plain statements: does the ensemble beat each baseline (net total return, Sharpe), and is
    that an edge beyond noise (the intervals of `significance`)?"""
    ens = results[ENSEMBLE]["trading"]
    lines, beats = [], {}
    for name, b in baselines.items():
        bt = b["trading"]
        ok = ens["total_return"] > bt["total_return"]
        beats[name] = ok
        lines.append(f"The ensemble {'BEATS' if ok else 'DOES NOT BEAT'} {name}: net total return "
                     f"{ens['total_return']:+.2%} vs {bt['total_return']:+.2%} (Sharpe {_fmt(ens['sharpe'])} vs "
                     f"{_fmt(bt['sharpe'])}).")
    cls = results[ENSEMBLE]["classification"]
    if cls["accuracy"] is not None:
        better = cls["accuracy"] > cls["majority_accuracy"]
        lines.append(f"Ensemble accuracy {cls['accuracy']:.3f} is {'above' if better else 'NOT above'} the "
                     f"majority-class rate {cls['majority_accuracy']:.3f} on {cls['n']} out-of-sample labels.")
    n_periods = ens["n_periods"]
    if n_periods < 250:
        lines.append(f"Caution: {n_periods} decision periods only; the annualized Sharpe ratios are very noisy "
                     "at this length and say little.")
    if sig is not None:
        iv = sig["net_return_per_period"]
        if iv["lo"] is not None:
            lines.append(f"Ensemble net return per decision period {iv['mean']:+.4%}, 95% interval "
                         f"[{iv['lo']:+.4%}, {iv['hi']:+.4%}] (block bootstrap, {iv['n']} periods).")
        for name, ex in sig["excess_per_period"].items():
            if ex is not None and ex["lo"] is not None:
                lines.append(f"Excess over {name} per period {ex['mean']:+.4%}, 95% interval "
                             f"[{ex['lo']:+.4%}, {ex['hi']:+.4%}].")
        acc = sig["accuracy"]
        if acc["p_value"] is not None:
            lines.append(f"Accuracy above the majority rate: one-sided binomial p = {acc['p_value']:.3g}.")
        lines.append("An edge after costs beyond noise: the net return interval lies above zero." if sig["edge"]
                     else "No edge after costs beyond noise: the net return interval includes zero or lies below.")
    all_beaten = bool(beats) and all(beats.values())
    headline = ("The ensemble beats every baseline net of costs on this data." if all_beaten else
                "The ensemble does NOT beat all baselines net of costs on this data: "
                f"it loses to {', '.join(k for k, v in beats.items() if not v)}.")
    return {"ensemble_beats_all_baselines": all_beaten, "beats": beats, "headline": headline, "statements": lines,
            "edge": bool(sig["edge"]) if sig is not None else None}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
