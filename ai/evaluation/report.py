"""The evaluation report on disk: var/reports/<timestamp>/report.json plus PNG plots.

Plots (matplotlib, Agg backend): equity.png (net equity of the ensemble, each model and the
baselines), calibration.png (observed up-rate against predicted probability, deciles),
accuracy.png (accuracy per fold over time, each model and the ensemble), and, when the result
has a `sizing` section (ai/evaluation/sizing.py), sizing.png (net equity of PPO-capped-by-Kelly
and Kelly-only sizing over the same positions), and, when it has an `orchestration` section
(ai/evaluation/orchestration.py), orchestration.png (net equity of the full orchestration and of
each ablation, demo and null market). The JSON leads with the verdict: whether the ensemble beat
the baselines, stated plainly either way.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from ai.evaluation.walkforward import ENSEMBLE  # noqa: E402


def reports_root() -> Path:
    from django.conf import settings

    return Path(getattr(settings, "REPORTS_DIR", "") or Path(settings.VAR_DIR) / "reports")


def _dates(t_ms):
    return [datetime.fromtimestamp(t / 1000, UTC) for t in t_ms]


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model, the ensemble and each baseline: the headline figures."""
    rows = []
    for name, r in [*result["models"].items(), (ENSEMBLE, result["ensemble"]), *result["baselines"].items()]:
        c, t = r.get("classification", {}), r["trading"]
        rows.append({"name": name, "accuracy": c.get("accuracy"), "log_loss": c.get("log_loss"),
                     "brier": c.get("brier"), "hit_rate": t["hit_rate"], "total_return": t["total_return"],
                     "sharpe": t["sharpe"], "max_drawdown": t["max_drawdown"], "turnover": t["turnover"]})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def f(x, spec):
        return "    n/a" if x is None else format(x, spec)

    lines = [f"{'':14} {'acc':>7} {'logloss':>7} {'brier':>7} {'hit':>7} {'return':>8} {'sharpe':>7} "
             f"{'maxDD':>7} {'turnover':>8}"]
    for r in rows:
        lines.append(f"{r['name']:14} {f(r['accuracy'], '7.3f')} {f(r['log_loss'], '7.3f')} {f(r['brier'], '7.3f')} "
                     f"{f(r['hit_rate'], '7.3f')} {f(r['total_return'], '+8.2%')} {f(r['sharpe'], '7.2f')} "
                     f"{f(r['max_drawdown'], '7.2%')} {f(r['turnover'], '8.1f')}")
    return "\n".join(lines)


def _plot_equity(result, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for name, r in result["models"].items():
        e = r["trading"]["equity"]
        ax.plot(_dates(e["t_ms"]), e["equity"], lw=1, alpha=0.7, label=name)
    styles = {"buy_and_hold": ("grey", "--"), "momentum": ("tab:brown", ":"), "random": ("black", "-.")}
    for name, r in result["baselines"].items():
        e = r["trading"]["equity"]
        color, ls = styles.get(name, (None, "--"))
        ax.plot(_dates(e["t_ms"]), e["equity"], lw=1.2, ls=ls, color=color, label=f"{name} (baseline)")
    e = result["ensemble"]["trading"]["equity"]
    ax.plot(_dates(e["t_ms"]), e["equity"], lw=2.4, color="tab:red", label="ENSEMBLE")
    ax.axhline(1.0, color="k", lw=0.5)
    for f in result["folds"]:
        ax.axvline(_dates([f["test_start_ms"]])[0], color="k", lw=0.4, alpha=0.3)
    cfg = result["config"]
    ax.set_title(f"Net equity out of sample (walk-forward, {cfg['n_folds']} folds; costs "
                 f"{cfg['taker_fee_rate'] + cfg['slippage_rate']:.2%}/side)\n{result['verdict']['headline']}",
                 fontsize=9)
    ax.set_ylabel("equity (start = 1)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    ax.legend(fontsize=8, ncol=2, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_calibration(result, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="k", lw=0.6, ls="--", label="perfect")
    for name, r in [*result["models"].items(), (ENSEMBLE, result["ensemble"])]:
        rows = [b for b in r["classification"]["calibration"] if b["n"]]
        if not rows:
            continue
        lw = 2.4 if name == ENSEMBLE else 1
        ax.plot([b["mean_predicted"] for b in rows], [b["observed_up"] for b in rows], marker="o", ms=3, lw=lw,
                label=f"{name} (n={r['classification']['n']})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(up), decile mean")
    ax.set_ylabel("observed up rate")
    ax.set_title("Calibration out of sample (moves beyond the fee band)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_accuracy(result, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, r in [*result["models"].items(), (ENSEMBLE, result["ensemble"])]:
        pts = [(p["test_start_ms"], p["accuracy"]) for p in r["per_fold_accuracy"] if p["accuracy"] is not None]
        if pts:
            ax.plot(_dates([t for t, _ in pts]), [a for _, a in pts], marker="o", lw=2.4 if name == ENSEMBLE else 1,
                    label=name)
    ax.axhline(0.5, color="k", lw=0.6, ls="--", label="coin flip")
    ax.set_ylabel("accuracy (fold test window)")
    ax.set_title("Out-of-sample accuracy per fold (x = test window start)", fontsize=9)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_sizing(sizing, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5))
    labels = {"ppo": ("PPO capped by Kelly", "tab:purple", "-"), "kelly": ("Kelly-only", "tab:green", "--")}
    for name, f in sizing["sizers"].items():
        label, color, ls = labels.get(name, (name, None, "-"))
        e = f["equity"]
        ax.plot(_dates(e["t_ms"]), e["equity"], lw=1.8, color=color, ls=ls,
                label=f"{label}: {f['total_return']:+.2%}, max DD {f['max_drawdown']:.2%}")
    ax.axhline(1.0, color="k", lw=0.5)
    iv = sizing["difference_per_position"]
    interval = ("" if iv["lo"] is None else
                f"; PPO - Kelly per position {iv['mean'] * 1e4:+.3f} bp, 95% [{iv['lo'] * 1e4:+.3f}, "
                f"{iv['hi'] * 1e4:+.3f}] bp")
    ax.set_title(f"RL sizing out of sample, same {sizing['positions']['n_positions']} positions (simulated market, "
                 f"planted alpha {sizing['simulated_market']['alpha']}){interval}\nVerdict: PPO {sizing['verdict']} "
                 "vs Kelly-only", fontsize=9)
    ax.set_ylabel("equity (start = 1)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_orchestration(orch, path: Path) -> None:
    markets = orch["markets"]
    fig, axes = plt.subplots(1, len(markets), figsize=(7 * len(markets), 5.5), squeeze=False)
    styles = {"full": ("black", "-", 2.4), "without_pba": ("tab:blue", "--", 1.3),
              "without_pal": ("tab:green", "--", 1.3), "without_pil": ("tab:orange", ":", 1.6),
              "without_meta": ("tab:red", "-.", 1.3)}
    for ax, m in zip(axes[0], markets.values(), strict=True):
        for cname, (color, ls, lw) in styles.items():
            f = m["configurations"][cname]
            e = f["equity"]
            part = cname.removeprefix("without_")
            verdict = "" if cname == "full" else f" - {part.upper()} {m['parts'][part]['verdict']}"
            ax.plot(_dates(e["t_ms"]), e["equity"], color=color, ls=ls, lw=lw,
                    label=f"{cname}: {f['total_return']:+.2%}{verdict}")
        ax.axhline(1.0, color="k", lw=0.5)
        what = (f"demo market (planted alpha {m['alpha']})" if m["alpha"] else
                f"null market (P(up) stretched x{m['probability_stretch']['evaluation']:.1f})")
        ax.set_title(f"Orchestration ablation, {what}\nnet of costs, out of sample; verdict = full - without, "
                     "95% block bootstrap", fontsize=9)
        ax.set_ylabel("equity (start = 1)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], root: Path | None = None, params: dict | None = None) -> Path:
    """Write report.json and the plots into a new <root>/<UTC timestamp>/; return that folder."""
    root = Path(root) if root is not None else reports_root()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = root / stamp
    folder.mkdir(parents=True, exist_ok=False)
    plots = {"equity": "equity.png", "calibration": "calibration.png", "accuracy": "accuracy.png"}
    _plot_equity(result, folder / plots["equity"])
    _plot_calibration(result, folder / plots["calibration"])
    _plot_accuracy(result, folder / plots["accuracy"])
    if result.get("sizing"):
        plots["sizing"] = "sizing.png"
        _plot_sizing(result["sizing"], folder / plots["sizing"])
    if result.get("orchestration"):
        plots["orchestration"] = "orchestration.png"
        _plot_orchestration(result["orchestration"], folder / plots["orchestration"])
    doc = {"created_at": stamp, "verdict": result["verdict"], "summary": summary_rows(result),
           "params": params or {}, "plots": plots, **{k: v for k, v in result.items() if k != "verdict"}}
    (folder / "report.json").write_text(json.dumps(doc, indent=1, allow_nan=False, default=_json_default))
    return folder


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
