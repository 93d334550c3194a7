"""RL sizing evaluated: the PPO agent capped by fractional Kelly against Kelly-only, out of
sample, on position outcomes. Pure (numpy and the ai.sizing pieces; no Django at import).

The market is the demo simulator (trading/simulator) at the demo's planted strength (SIM_ALPHA
0.5 by default), with fixed seeds. The effect there is planted (trading/simulator/model.py):
whatever either sizer earns here says nothing about a real market; the comparison is about
how the two sizers spend the same edge.

Timeline (grid of bar timestamps, purged like ai.features.splits: a purge of `horizon` bars
before each test window and an embargo of `horizon` bars after the first):

    |-- forecaster training --|purge| agent window |embargo| evaluation window |

Probabilities. `evaluate()` of walkforward.py does not expose its per-sample probabilities, so
P(up) comes from one tabular forecaster (xgboost by default) in an expanding, purged
walk-forward of two folds (`ai.features.splits.walk_forward`): fold 0 is fitted on everything
before the agent window and predicts it, fold 1 on everything before the evaluation window
(the agent window included) and predicts it. Every probability either sizer sees is out of
sample. They pass through `ai.ensemble.vote` (one voter), so the BUY/SELL/HOLD rule and the
0.6 confidence threshold are the serving policy's.

Agent. A PPO agent (ai.sizing.agent.train, on ai.sizing.env.SizingEnv with the defaults that
ai.sizing.services.retrain uses) is trained on the agent window's bars and its out-of-sample
probabilities only: every bar it reads (the reward reads t + horizon) ends before the
evaluation window starts.

Positions. In the evaluation window, one decision per symbol every `horizon` bars (the
walk-forward's non-overlapping grid). A signal that clears the threshold opens a position in
its direction, held `horizon` bars; its outcome is direction x (exp(fwd) - 1) minus taker fee
and slippage on entry and on exit. Both sizers size the same positions; only the size
differs. A bar whose price is exactly unchanged after `horizon` bars has no sample in the
dataset (its label is undefined), so it is never traded by either (0.3 % of bars here).

Sizing follows ai.sizing.services.size_signal: `decide()` with the ensemble's P(up), the
symbol's per-bar volatility over 20 bars, the drawdown from the UTC day's starting equity,
the gross exposure already opened at this decision time as a share of equity, the mean PnL of
the sizer's last 5 positions over its equity, the payoff ratio (average win / average loss of
its last 200 positions, 1.0 until 10 of each), an allowed size of 10 % of equity
(RL_SIZING_ALLOWED_FRACTION) and the risk policy's 10,000 USD maximum position, on the demo
account's 100,000 USDT. Each sizer keeps its own equity, so the observations the agent sees
are those its own path produces. Positions opened at one decision time close before the next.

Figures per sizer: total net return, mean return on equity per position, a Sharpe-like ratio
(mean / std of the net return per decision period, annualized like walkforward.py), maximum
drawdown, positions with a size. The paired per-position difference PPO - Kelly (return on
equity, same positions) gets a circular block-bootstrap 95 % interval
(walkforward.bootstrap_mean_interval); the verdict says better, worse or not distinguishable
from Kelly-only beyond noise.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ai.ensemble import DEFAULT_MIN_CONFIDENCE, vote
from ai.evaluation.walkforward import BARS_PER_YEAR_5M, Costs, bootstrap_mean_interval, decision_grid
from ai.sizing import agent as agent_mod
from core.enums import SignalAction

PPO = "ppo"
KELLY = "kelly"
SIZERS = (PPO, KELLY)
DAY_MS = 86_400_000
# The three caps of kelly.final_size_usd, in its order; for Kelly-only the agent's share is 1.
CAPS = ("agent_x_allowed", "kelly", "max_position")

# Verdict words, one per outcome of the interval of the paired difference.
BETTER, WORSE, INDISTINGUISHABLE = "better", "worse", "not distinguishable"

# What ai.sizing.services.size_signal uses in the demo: the demo account's balance
# (trading/management/commands/setup_demo.py), RL_SIZING_ALLOWED_FRACTION's default, the risk
# policy's default max_position_usd (risk/domain/policy.py), and the experience windows.
DEMO_EQUITY_USD = 100_000.0
ALLOWED_FRACTION = 0.1
MAX_POSITION_USD = 10_000.0
VOLATILITY_BARS = 20
RECENT_POSITIONS = 5
PAYOFF_WINDOW = 200
MIN_TRADES_FOR_PAYOFF = 10

START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC, as the evaluation tests use


@dataclass(frozen=True)
class SizingEvaluationConfig:
    days: int = 40
    market_seed: int = 11
    alpha: float = 0.5  # SIM_ALPHA's default: the demo's planted strength
    start_ms: int = START_MS
    horizon: int = 12  # the label horizon (bars); positions are held as long
    forecaster: str = "xgboost"
    # Fewer trees than serving (early stopping decides anyway): the fits take seconds.
    forecaster_params: dict = field(default_factory=lambda: {"n_estimators": 300})
    train_sample_every: int = 3  # one bar in 3 as a forecaster training sample, as evaluate_models
    band: float = 0.002  # training labels beyond the round-trip cost, as train_models
    window_fraction: float = 0.3  # the agent window and the evaluation window, each this share of bars
    agent_timesteps: int = 20_000  # RL_SIZING_TIMESTEPS's default in ai.sizing.services.retrain
    agent_seed: int = 0
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    costs: Costs = field(default_factory=Costs)
    equity_usd: float = DEMO_EQUITY_USD
    allowed_fraction: float = ALLOWED_FRACTION
    max_position_usd: float = MAX_POSITION_USD
    bar_ms: int = 300_000
    bootstrap_seed: int = 0


@dataclass(frozen=True)
class Layout:
    """Where each part of the timeline lies (open times of bars, ms)."""

    forecaster_train_end_ms: int  # the last sample time any forecaster trained on (fold 1)
    forecaster_label_end_ms: int  # the last bar a forecaster's training label read
    agent_start_ms: int
    agent_end_ms: int  # the last bar the agent reads (rewards included)
    eval_start_ms: int
    eval_end_ms: int
    horizon_bars: int
    bar_ms: int

    def check(self) -> None:
        """Raise ValueError unless the agent and the forecasters saw nothing of the evaluation
        window (with a purge of at least one horizon before it)."""
        gap = self.horizon_bars * self.bar_ms
        if not self.agent_start_ms <= self.agent_end_ms < self.eval_start_ms <= self.eval_end_ms:
            raise ValueError(f"the agent window must end before the evaluation window starts: {self}")
        if self.agent_end_ms + gap >= self.eval_start_ms:
            raise ValueError(f"no purge of {self.horizon_bars} bars between the agent's data and the evaluation")
        if self.forecaster_label_end_ms >= self.eval_start_ms:
            raise ValueError("a forecaster's training label reaches into the evaluation window")


@dataclass(frozen=True)
class Positions:
    """The positions both sizers size, in decision-time order (ties by symbol)."""

    t_ms: np.ndarray
    symbol: np.ndarray
    direction: np.ndarray  # +1 long (BUY), -1 short (SELL)
    probability_up: np.ndarray  # the ensemble's P(up) at entry
    volatility: np.ndarray  # per-bar std of log returns over the last 20 bars at entry
    outcome: np.ndarray  # the position's return on its notional, net of costs on both sides

    def __len__(self) -> int:
        return len(self.t_ms)


# --- market and probabilities -----------------------------------------------------------------


def simulate_market(config: SizingEvaluationConfig) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(bars per symbol, sector per symbol) of the demo universe, seeded."""
    from trading.simulator.model import BARS_PER_DAY, MarketSimulator
    from trading.simulator.universe import demo_config

    sim_config = demo_config(config.start_ms, alpha=config.alpha)
    batch = MarketSimulator(sim_config, config.market_seed).generate(config.days * BARS_PER_DAY)
    return dict(batch.ohlcv), {a.symbol: a.sector for a in sim_config.assets}


def out_of_sample_probabilities(ds, config: SizingEvaluationConfig) -> tuple[np.ndarray, dict[str, np.ndarray], Layout]:
    """P(up) for the samples of the agent and the evaluation windows (NaN elsewhere), the two
    windows' sample indices, and the layout. See the module doc."""
    from ai.features.splits import train_validation_split, walk_forward
    from ai.forecasters import create

    h = ds.horizon
    n_grid = len(np.unique(ds.t_ms))
    test_size = int(config.window_fraction * n_grid)
    folds = list(walk_forward(ds.t_ms, ds.label_end_ms, horizon_bars=h, n_splits=2, test_size=test_size,
                              mode="expanding", min_train_size=10))
    decisive = np.abs(ds.fwd_log_return) > config.band
    sampled = (ds.t_ms // config.bar_ms) % config.train_sample_every == 0
    p_up = np.full(len(ds), np.nan)
    trained_end, label_end = [], []
    for k, (train_idx, test_idx) in enumerate(folds):
        tr = train_idx[decisive[train_idx] & sampled[train_idx]]
        inner_tr, inner_val = train_validation_split(ds.t_ms[tr], ds.label_end_ms[tr], horizon_bars=h)
        model = create(config.forecaster, **config.forecaster_params)
        model.fit(ds.X_tab[tr[inner_tr]], ds.y[tr[inner_tr]], ds.X_tab[tr[inner_val]], ds.y[tr[inner_val]],
                  seed=config.market_seed + k)
        p_up[test_idx] = model.predict_proba_up(ds.X_tab[test_idx])
        trained_end.append(int(ds.t_ms[tr].max()))
        label_end.append(int(ds.label_end_ms[tr].max()))
    (_, agent_idx), (_, eval_idx) = folds
    layout = Layout(forecaster_train_end_ms=max(trained_end), forecaster_label_end_ms=max(label_end),
                    agent_start_ms=int(ds.t_ms[agent_idx].min()), agent_end_ms=int(ds.t_ms[agent_idx].max()),
                    eval_start_ms=int(ds.t_ms[eval_idx].min()), eval_end_ms=int(ds.t_ms[eval_idx].max()),
                    horizon_bars=h, bar_ms=config.bar_ms)
    return p_up, {"agent": agent_idx, "eval": eval_idx}, layout


def agent_training_data(ohlcv: Mapping[str, np.ndarray], ds, p_up: np.ndarray, agent_idx: np.ndarray,
                        layout: Layout) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per symbol, the bars of the agent window and the out-of-sample P(up) at each (0.5, no
    opinion, at a bar without a sample). Nothing after `layout.agent_end_ms`."""
    series, probs = [], []
    for sym, bars in ohlcv.items():
        in_window = (bars[:, 0] >= layout.agent_start_ms) & (bars[:, 0] <= layout.agent_end_ms)
        rows = bars[in_window]
        mine = agent_idx[ds.symbol[agent_idx] == sym]
        if not len(rows) or not len(mine):
            continue
        p = np.full(len(rows), 0.5)
        at = np.searchsorted(rows[:, 0], ds.t_ms[mine])
        p[at] = p_up[mine]
        series.append(rows)
        probs.append(p)
    return series, probs


def train_agent(series: list[np.ndarray], probabilities: list[np.ndarray], *, timesteps: int,
                seed: int) -> agent_mod.TrainedAgent:
    """The agent as ai.sizing.services.retrain trains it, on the given bars and probabilities."""
    from ai.sizing.env import SizingEnv

    return agent_mod.train(SizingEnv(series, probabilities=probabilities), timesteps=timesteps, seed=seed)


def positions_from_signals(ohlcv: Mapping[str, np.ndarray], ds, p_up: np.ndarray, eval_idx: np.ndarray,
                           config: SizingEvaluationConfig) -> tuple[Positions, int]:
    """(the positions of the evaluation window, the number of signals voted on)."""
    h = ds.horizon
    grid = set(decision_grid(ds.t_ms[eval_idx], h, config.bar_ms).tolist())
    idx = np.array([i for i in eval_idx if int(ds.t_ms[i]) in grid], dtype=np.int64)
    idx = idx[np.lexsort((ds.symbol[idx], ds.t_ms[idx]))]
    log_returns = {s: np.diff(np.log(b[:, 4]), prepend=np.nan) for s, b in ohlcv.items()}
    times = {s: b[:, 0].astype(np.int64) for s, b in ohlcv.items()}

    def volatility(sym: str, t: int) -> float:
        # env.causal_volatility at one bar: the std of the last 20 log returns ending at t
        row = int(np.searchsorted(times[sym], t))
        return float(np.std(log_returns[sym][row - VOLATILITY_BARS + 1:row + 1])) if row >= VOLATILITY_BARS else 0.0

    keep, direction = [], []
    for i in idx:
        v = vote({config.forecaster: float(p_up[i])}, {config.forecaster: 1.0},
                 min_confidence_threshold=config.min_confidence)
        if v.action in (SignalAction.BUY, SignalAction.SELL):
            keep.append(i)
            direction.append(1.0 if v.action == SignalAction.BUY else -1.0)
    keep = np.array(keep, dtype=np.int64)
    direction = np.array(direction, dtype=np.float64)
    vol = np.array([volatility(str(s), int(t)) for s, t in zip(ds.symbol[keep], ds.t_ms[keep], strict=True)],
                   dtype=np.float64)
    outcome = direction * np.expm1(ds.fwd_log_return[keep]) - 2.0 * config.costs.per_side
    return Positions(t_ms=ds.t_ms[keep].astype(np.int64), symbol=ds.symbol[keep], direction=direction,
                     probability_up=p_up[keep], volatility=np.nan_to_num(vol), outcome=outcome), len(idx)


# --- the two sizers on the same positions ----------------------------------------------------


def payoff_ratio(pnls: list[float]) -> float:
    """Average win / average loss of the last PAYOFF_WINDOW PnLs; 1.0 until MIN_TRADES_FOR_PAYOFF
    of each (ai.sizing.services.payoff_stats)."""
    recent = pnls[-PAYOFF_WINDOW:]
    wins = [p for p in recent if p > 0]
    losses = [-p for p in recent if p < 0]
    if len(wins) >= MIN_TRADES_FOR_PAYOFF and len(losses) >= MIN_TRADES_FOR_PAYOFF:
        return float(np.mean(wins) / np.mean(losses))
    return agent_mod.DEFAULT_PAYOFF_RATIO


def run_sizer(positions: Positions, period_times: np.ndarray, agent: agent_mod.TrainedAgent | None,
              config: SizingEvaluationConfig) -> dict[str, Any]:
    """Size every position with `decide()` (agent None: Kelly-only) on this sizer's own equity path.

    Returns per position: size_usd, pnl_usd, return on equity (pnl / equity at entry), the
    agent's action; per decision period (`period_times`, every period of the window, with or
    without positions): equity after it closes and its net return."""
    n = len(positions)
    size, pnl, roe, action = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
    binding = np.zeros(n, dtype=np.int64)  # index into CAPS: which cap set the size
    fraction = np.zeros(n)  # size / equity at entry
    equity = config.equity_usd
    day, day_start = None, equity
    history: list[float] = []  # PnL (USD) of positions with a size, oldest first: the experience
    period_equity, period_ret = [], []
    order = np.searchsorted(positions.t_ms, period_times, side="left")
    ends = np.searchsorted(positions.t_ms, period_times, side="right")
    for t, lo, hi in zip(period_times, order, ends, strict=True):
        if int(t) // DAY_MS != day:
            day, day_start = int(t) // DAY_MS, equity
        drawdown = max(0.0, (day_start - equity) / day_start) if day_start > 0 else 0.0
        payoff = payoff_ratio(history)
        recent = float(np.mean(history[-RECENT_POSITIONS:])) / equity if history and equity > 0 else 0.0
        gross_open = 0.0
        for i in range(lo, hi):
            d = agent_mod.decide(
                str(positions.symbol[i]), float(positions.probability_up[i]), float(positions.volatility[i]),
                drawdown, gross_open / equity if equity > 0 else 0.0, recent, equity,
                config.allowed_fraction * equity, payoff,
                action=SignalAction.BUY if positions.direction[i] > 0 else SignalAction.SELL, agent=agent,
                max_position_usd=config.max_position_usd)
            size[i] = float(d["final_size_usd"])
            action[i] = d["agent_action"]
            caps = (d["agent_action"] * config.allowed_fraction * equity, d["kelly_fraction"] * equity,
                    config.max_position_usd)
            binding[i] = int(np.argmin(caps))
            gross_open += size[i]
        pnl[lo:hi] = size[lo:hi] * positions.outcome[lo:hi]
        roe[lo:hi] = pnl[lo:hi] / equity if equity > 0 else 0.0
        fraction[lo:hi] = size[lo:hi] / equity if equity > 0 else 0.0
        history.extend(float(x) for x, s in zip(pnl[lo:hi], size[lo:hi], strict=True) if s > 0)
        before = equity
        equity = equity + float(pnl[lo:hi].sum())
        period_ret.append(equity / before - 1.0 if before > 0 else 0.0)
        period_equity.append(equity / config.equity_usd)
    return {"size_usd": size, "pnl_usd": pnl, "return_on_equity": roe, "agent_action": action, "binding": binding,
            "size_fraction": fraction,
            "period_t_ms": np.asarray(period_times, dtype=np.int64), "period_returns": np.array(period_ret),
            "equity": np.array(period_equity)}


def figures(path: Mapping[str, Any], periods_per_year: float) -> dict[str, Any]:
    """The headline figures of one sizer's path (run_sizer's result)."""
    eq = np.asarray(path["equity"])
    ret = np.asarray(path["period_returns"])
    sized = np.asarray(path["size_usd"]) > 0
    roe = np.asarray(path["return_on_equity"])
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))
    dd = 1.0 - np.concatenate([[1.0], eq]) / peak
    sharpe = (float(ret.mean() / ret.std(ddof=1) * math.sqrt(periods_per_year))
              if len(ret) > 1 and ret.std(ddof=1) > 0 else None)
    return {
        "total_return": float(eq[-1] - 1.0) if len(eq) else 0.0,
        "mean_return_per_position": float(roe.mean()) if len(roe) else None,
        "sharpe": sharpe,
        "max_drawdown": float(dd.max()),
        "n_positions": int(sized.sum()),
        "mean_size_usd": float(np.asarray(path["size_usd"])[sized].mean()) if sized.any() else 0.0,
        "hit_rate": float((np.asarray(path["pnl_usd"])[sized] > 0).mean()) if sized.any() else None,
        "binding_cap": {name: int((np.asarray(path["binding"]) == i).sum()) for i, name in enumerate(CAPS)},
        "equity": {"t_ms": [int(x) for x in path["period_t_ms"]], "equity": [float(x) for x in eq]},
    }


def compare(ppo: Mapping[str, Any], kelly: Mapping[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """The paired per-position difference PPO - Kelly (return on equity) with its interval, and
    the verdict word read from it.

    Under `decide()` the agent can only shrink what Kelly allows, so a PPO that loses here may
    just be a smaller Kelly. `allocation_per_position` separates that: PPO against Kelly-only
    scaled by a constant to the same mean share of equity (c = mean PPO share / mean Kelly
    share). Above zero, the agent puts more on the better positions; a constant scale-down
    gives exactly zero."""
    roe_p, roe_k = np.asarray(ppo["return_on_equity"]), np.asarray(kelly["return_on_equity"])
    iv = bootstrap_mean_interval(roe_p - roe_k, seed=seed)
    frac_p, frac_k = np.asarray(ppo["size_fraction"]), np.asarray(kelly["size_fraction"])
    scale = float(frac_p.mean() / frac_k.mean()) if len(frac_k) and frac_k.mean() > 0 else 0.0
    allocation = bootstrap_mean_interval(roe_p - scale * roe_k, seed=seed)
    return {"difference_per_position": iv, "verdict": _word(iv),
            "allocation_per_position": {**allocation, "kelly_scale": scale}, "allocation_verdict": _word(allocation)}


def _word(iv: Mapping[str, Any]) -> str:
    if iv["lo"] is None:
        return INDISTINGUISHABLE
    if iv["lo"] > 0:
        return BETTER
    if iv["hi"] < 0:
        return WORSE
    return INDISTINGUISHABLE


ProgressFn = Callable[[str], None]


@dataclass
class SizingComparison:
    """Everything the comparison produced, before it is summarised (`summarize`)."""

    config: SizingEvaluationConfig
    layout: Layout
    n_symbols: int
    agent_series: list[np.ndarray]  # the bars the agent was trained on, per symbol
    agent: agent_mod.TrainedAgent
    train_seconds: float
    positions: Positions
    n_signals: int
    period_times: np.ndarray  # the evaluation window's decision times
    paths: dict[str, dict[str, Any]]  # run_sizer's result per sizer


def compare_sizers(config: SizingEvaluationConfig | None = None,
                   progress: ProgressFn | None = None) -> SizingComparison:
    """Simulate, forecast out of sample, train the agent on the agent window, size the
    evaluation window's positions with both sizers (module doc)."""
    from ai.features.dataset import build_dataset

    config = config or SizingEvaluationConfig()
    say = progress or (lambda _msg: None)
    say(f"simulating {config.days} days of the demo market (alpha {config.alpha}, seed {config.market_seed})")
    ohlcv, sectors = simulate_market(config)
    ds = build_dataset(ohlcv, horizon=config.horizon, band=0.0, sample_every=1, sectors=sectors)
    say("out-of-sample probabilities (purged walk-forward, 2 folds)")
    p_up, windows, layout = out_of_sample_probabilities(ds, config)
    layout.check()
    series, probs = agent_training_data(ohlcv, ds, p_up, windows["agent"], layout)
    say(f"training the PPO agent on the agent window ({config.agent_timesteps} timesteps)")
    started = time.perf_counter()
    agent = train_agent(series, probs, timesteps=config.agent_timesteps, seed=config.agent_seed)
    train_seconds = time.perf_counter() - started
    positions, n_signals = positions_from_signals(ohlcv, ds, p_up, windows["eval"], config)
    period_times = decision_grid(ds.t_ms[windows["eval"]], config.horizon, config.bar_ms)
    say(f"sizing {len(positions)} positions with both sizers")
    paths = {PPO: run_sizer(positions, period_times, agent, config),
             KELLY: run_sizer(positions, period_times, None, config)}
    return SizingComparison(config=config, layout=layout, n_symbols=len(ohlcv), agent_series=series, agent=agent,
                            train_seconds=train_seconds, positions=positions, n_signals=n_signals,
                            period_times=period_times, paths=paths)


def summarize(c: SizingComparison) -> dict[str, Any]:
    """The JSON-ready figures, interval, verdict and statements of a comparison."""
    config, positions = c.config, c.positions
    periods_per_year = BARS_PER_YEAR_5M * (300_000 / config.bar_ms) / config.horizon
    figs = {name: figures(path, periods_per_year) for name, path in c.paths.items()}
    cmp = compare(c.paths[PPO], c.paths[KELLY], seed=config.bootstrap_seed)
    layout = c.layout
    return {
        "config": {**{k: v for k, v in asdict(config).items() if k != "costs"},
                   "taker_fee_rate": config.costs.taker_fee_rate, "slippage_rate": config.costs.slippage_rate},
        "simulated_market": {"simulator": "trading.simulator demo universe", "alpha": config.alpha,
                   "seed": config.market_seed, "days": config.days, "n_symbols": c.n_symbols,
                   "planted": "the effect is planted by the simulator (SIM_ALPHA); it says nothing about a "
                              "real market"},
        "probabilities": {"source": f"{config.forecaster}, expanding purged walk-forward of 2 folds, through "
                                    "ai.ensemble.vote (one voter)",
                          "threshold": config.min_confidence},
        "layout": {**asdict(layout), **{f"{k}_utc": _iso(getattr(layout, k)) for k in
                                        ("agent_start_ms", "agent_end_ms", "eval_start_ms", "eval_end_ms")}},
        "agent": {"timesteps": config.agent_timesteps, "seed": config.agent_seed,
                  "train_seconds": round(c.train_seconds, 2), "n_series": len(c.agent_series),
                  "mean_action": float(c.paths[PPO]["agent_action"].mean()) if len(positions) else None},
        "positions": {"n_signals": c.n_signals, "n_positions": len(positions), "n_periods": len(c.period_times),
                      "mean_outcome": float(positions.outcome.mean()) if len(positions) else None,
                      "hit_rate": float((positions.outcome > 0).mean()) if len(positions) else None},
        "sizers": figs,
        **cmp,
        "statements": statements(figs, cmp, len(positions), config),
    }


def evaluate_sizing(config: SizingEvaluationConfig | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The whole comparison (module doc); a JSON-ready dict."""
    return summarize(compare_sizers(config, progress))


def statements(figs: Mapping[str, Any], cmp: Mapping[str, Any], n_positions: int,
               config: SizingEvaluationConfig) -> list[str]:
    """Plain sentences for the report. Per-position figures are in basis points of equity (a
    position moves equity by hundredths of a percent, which percentages would round away)."""
    p, k = figs[PPO], figs[KELLY]
    iv = cmp["difference_per_position"]
    lines = [f"RL sizing, out of sample on the simulated demo market (planted effect, alpha {config.alpha}): "
             f"{n_positions} positions, the same for both sizers."]
    for name, f in ((f"PPO capped by Kelly ({config.agent_timesteps} timesteps)", p), ("Kelly-only", k)):
        lines.append(f"{name}: net return {f['total_return']:+.2%}, mean per position "
                     f"{_bp(f['mean_return_per_position'])} of equity, Sharpe {_num(f['sharpe'])}, max drawdown "
                     f"{f['max_drawdown']:.2%}, {f['n_positions']} positions sized, mean size "
                     f"{f['mean_size_usd']:,.0f} USD.")
    caps = p["binding_cap"]
    total = sum(caps.values()) or 1
    lines.append(f"The PPO agent's share set the size of {caps['agent_x_allowed'] / total:.1%} of the positions; "
                 f"fractional Kelly {caps['kelly'] / total:.1%}, the policy's maximum position "
                 f"{caps['max_position'] / total:.1%}.")
    if iv["lo"] is not None:
        lines.append(f"PPO - Kelly per position {_bp(iv['mean'])} of equity, 95% interval "
                     f"[{_bp(iv['lo'])}, {_bp(iv['hi'])}] (paired block bootstrap, {iv['n']} positions).")
    al = cmp["allocation_per_position"]
    if al["lo"] is not None:
        how = {BETTER: "puts more on the better positions", WORSE: "puts more on the worse positions",
               INDISTINGUISHABLE: "allocates no better than a constant fraction of Kelly"}[cmp["allocation_verdict"]]
        lines.append(f"Against Kelly-only scaled to PPO's mean size (x{al['kelly_scale']:.3f}), PPO {how}: "
                     f"{_bp(al['mean'])} per position, 95% interval [{_bp(al['lo'])}, {_bp(al['hi'])}].")
    word = cmp["verdict"]
    if word == INDISTINGUISHABLE:
        lines.append("Verdict: PPO sizing is not distinguishable from Kelly-only beyond noise.")
    else:
        lines.append(f"Verdict: PPO sizing is {word.upper()} than Kelly-only beyond noise.")
    return lines


def _bp(x) -> str:
    return "n/a" if x is None else f"{x * 1e4:+.4f} bp"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
