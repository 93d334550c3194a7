"""Orchestration ablation: the whole portfolio with PBA, PAL, PIL and the meta-strategy, against
the same portfolio with one of them turned off, out of sample and net of costs. Pure (numpy, the
pure cores of analytics/orchestration, risk/domain, ai.sizing.kelly and ai.meta; no Django at
import).

Markets. The demo simulator (trading/simulator) at the demo's planted strength (SIM_ALPHA 0.5 by
default) and the same simulator with nothing planted (alpha 0, a null market: nothing should
help there), fixed seeds. The demo market's effect is planted (trading/simulator/model.py):
whatever a part earns there says nothing about a real market; the question is whether it turns
the same out-of-sample signals into more net return.

Probabilities. As in ai/evaluation/sizing.py: one tabular forecaster (xgboost) in an expanding,
purged walk-forward of two folds gives P(up) out of sample for two windows, each 30 % of the
bars: the warm-up window (fold 0's test window) and, after an embargo of one horizon, the
evaluation window (fold 1's). They do not depend on the orchestration parts, so they are computed
once per market and shared by every configuration. Only the evaluation window is scored; the
warm-up window exists for the meta-strategy, which trains there (see below).

The portfolio, bar by bar (5 m) over a window, in this order at each bar's close:
1. exits: a position held its profile's horizon (12 bars by default) closes at the close;
2. entries: each symbol without a position whose signal clears its profile's ensemble threshold
   (ai.ensemble.vote's rule, walkforward.actions_to_positions) is a candidate, most confident
   first. Size: quarter Kelly of P(win) with a payoff ratio of 1 (ai.sizing.kelly, Kelly-only as
   in the sizing evaluation, but without its payoff history: kept simple), capped at 10 % of
   equity and the risk policy's 10,000 USD per position. The real risk validator
   (risk.domain.rules.validate, the default Policy: 10 open positions, 10,000 USD per position,
   300 % gross, a 10 % daily drawdown stop) approves it or cuts it to its room; that gate is in
   every configuration, so the comparison is of the orchestration on top of risk;
3. orchestration, as one pass of the orchestrator (analytics/orchestration/service.py) does it:
   PBA's reductions of the book (balancer.balance with BalancerCaps' defaults: 30 % per sector,
   10 positions, 100 % gross, acting beyond cap + its 0.5-point no-trade band; every bar, since
   in the system it runs every 600 s and after each position.opened), PIL's class of each
   position and PAL's adds (amplifier.decide with AmplifierConfig's defaults: winners at >= 5 %
   unrealized with the signal still agreeing, 1.5x the position, one add per 4 h; the room is
   the risk policy's, by its validator, and with PBA on what is left under PBA's sector and
   gross caps, after this pass's reductions and earlier adds). They go through AI-HFOS
   (hfos.check_directives, then hfos.resolve with its own rule: no amplification while the
   day's drawdown is beyond 5 %), so a PAL add against a PBA reduction of the same symbol goes
   to PBA, as in the system. Reductions and adds fill at the bar's close (the system sends them
   through execution; no pending state is modelled).

Every trade pays the taker fee plus slippage (walkforward.Costs, 0.1 % per side) on its notional:
entries, adds, reductions and exits. The profile's execution strategy (SMART or LIMIT) does not
change the cost here: a limit order's cheaper fill is not modelled (a limitation that can only
understate the meta-strategy's "patient" profile).

The parts, and what turning one off means:
- PBA off: no reductions, and PAL's room is the risk validator's only.
- PAL off: no adds.
- PIL off: PAL treats every position with a PnL >= 0 as a winner. PIL's value is measured as its
  gate on PAL and nothing else: positions exit on their horizon, no stop is tightened here.
  (PAL already refuses an add against the current signal, so of PIL's "at risk" reasons only the
  volatility spike, and of its classes only "stale", can change an add; there is no leverage,
  so no liquidation price.)
- Meta-strategy off: every context trades the default profile (threshold 0.6, 12 bars). On: the
  contextual bandit of ai.meta.bandit chooses a profile per (regime of the symbol's closes,
  sector) for each candidate. It trains on the warm-up window with exploration
  (`choose(explore=True)`, as its offline training does), learning from each closed position's
  net return on its entry notional; then it runs the evaluation window as it runs live
  (`choose()`: cautious, falls back to the default when untrained or unsure), still learning
  from each position that closes. Every reward it sees is of a position already closed: the
  warm-up window's positions close before the embargo ends, before the evaluation starts.

The bandit's own randomness. It explores at random while it trains, and which arm a draw picks
changes which positions open, which changes every later reward: a single run of each
configuration would ride one draw of that noise on every comparison. So each configuration with
the meta-strategy runs once per seed of `meta_seeds` (5 by default) and its per-period returns
are averaged (the same capital split evenly across the runs). Beside the comparisons the issue
asks for (full against full without one part), PBA, PAL and PIL are also compared alone, with
the meta-strategy off in both arms (deterministic: no bandit noise at all).

The null market. On the simulator at alpha 0 the forecaster, trained with early stopping, is
close to 0.5 everywhere out of sample: as forecast, no probability clears the 0.6 threshold, the
book never opens and every part is trivially "not distinguishable". To ask whether a part makes
money out of noise, the null market's P(up) - 0.5 is stretched (per window) to the spread of the
demo market's: the same directions and ranking, traded as confidently as the planted effect is.
The share that clears the threshold as forecast is reported with it.

Figures per configuration over the evaluation window: net total return, a Sharpe-like ratio
(mean / std of the net return per period of `horizon` bars, annualized), maximum drawdown,
positions, adds, reductions, costs. Per part: the paired difference full - without the part of
the per-period net returns, with a circular block-bootstrap 95 % interval
(walkforward.bootstrap_mean_interval); the verdict is "helps" when the interval lies above
zero, "hurts" below, else "not distinguishable". The recommended default is ON only for a part
that helps on the demo market (and, for PBA, PAL and PIL, also alone with the meta-strategy off
in both arms) and does not hurt on the null market; every other part OFF, with the reason.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from ai.evaluation.walkforward import BARS_PER_YEAR_5M, Costs, actions_to_positions, bootstrap_mean_interval
from ai.meta.bandit import BASELINE_WINDOW, MIN_CLOSES, REGIME_WINDOW, Choice, Context, ContextualBandit, regime_of
from ai.meta.profiles import DEFAULT_PROFILE, PROFILES, Profile
from ai.sizing.kelly import final_size_usd, kelly_fraction
from analytics.orchestration import amplifier as pal
from analytics.orchestration import balancer as pba
from analytics.orchestration import hfos
from analytics.orchestration import intelligence as pil
from core.decimals import to_decimal
from core.enums import Mode, PositionSide
from risk.domain.policy import Policy
from risk.domain.rules import Exposure, Intent, OpenOrder, Snapshot, validate

PARTS = ("pba", "pal", "pil", "meta")
PART_NAMES = {"pba": "PBA (portfolio balancer)", "pal": "PAL (profit amplification)",
              "pil": "PIL (position intelligence)", "meta": "the meta-strategy (contextual bandit)"}
ISOLATED = ("pba", "pal", "pil")
FULL = "full"
DEMO, NULL = "demo", "null"

# Verdict words: the interval of full - without the part.
HELPS, HURTS, INDISTINGUISHABLE = "helps", "hurts", "not distinguishable"

DEMO_EQUITY_USD = 100_000.0  # the demo account (trading/management/commands/setup_demo.py)
ALLOWED_FRACTION = 0.1  # RL_SIZING_ALLOWED_FRACTION's default
KELLY_PAYOFF = 1.0
ATR_BARS = 14
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
DAY_MS = 86_400_000
REGIME_CLOSES = BASELINE_WINDOW + REGIME_WINDOW + 1  # all regime_of reads
CENT = Decimal("0.01")
ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Parts:
    """Which orchestration parts are on."""

    pba: bool = True
    pal: bool = True
    pil: bool = True
    meta: bool = True

    def without(self, part: str) -> Parts:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
        return Parts(**{**asdict(self), part: False})


def configurations() -> dict[str, Parts]:
    """full, and full without each part (named without_<part>); then, with the meta-strategy off
    in both arms, each of PBA, PAL and PIL alone (without_meta against without_meta_<part>):
    the bandit's own randomness rides on every comparison of the first kind, not on these."""
    out = {FULL: Parts(), **{f"without_{p}": Parts().without(p) for p in PARTS}}
    out.update({f"without_meta_{p}": Parts().without("meta").without(p) for p in ISOLATED})
    return out


@dataclass(frozen=True)
class OrchestrationEvaluationConfig:
    days: int = 40
    market_seed: int = 11
    alpha: float = 0.5  # SIM_ALPHA's default: the demo's planted strength
    start_ms: int = START_MS
    horizon: int = 12  # the label horizon (bars) and the default profile's holding horizon
    forecaster: str = "xgboost"
    forecaster_params: dict = field(default_factory=lambda: {"n_estimators": 300})
    train_sample_every: int = 3
    band: float = 0.002
    window_fraction: float = 0.3
    costs: Costs = field(default_factory=Costs)
    equity_usd: float = DEMO_EQUITY_USD
    allowed_fraction: float = ALLOWED_FRACTION
    policy: Policy = field(default_factory=Policy)
    caps: pba.BalancerCaps = field(default_factory=pba.BalancerCaps)
    amplifier: pal.AmplifierConfig = field(default_factory=pal.AmplifierConfig)
    max_drawdown_for_amplification_pct: Decimal = Decimal(5)  # HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT
    # The bandit explores at random while it trains: each configuration with the meta-strategy
    # runs once per seed and its per-period returns are averaged.
    meta_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    bar_ms: int = 300_000
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        if self.days < 5:
            raise ValueError(f"days must be at least 5, got {self.days}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {self.horizon}")
        if not 0 < self.allowed_fraction <= 1:
            raise ValueError(f"allowed_fraction must be in (0, 1], got {self.allowed_fraction}")
        if self.equity_usd <= 0:
            raise ValueError(f"equity_usd must be > 0, got {self.equity_usd}")
        if not self.meta_seeds:
            raise ValueError("meta_seeds must name at least one seed")

    def sizing_config(self, alpha: float):
        """The sizing evaluation's config for the same market and forecaster (its market and
        probability functions are reused)."""
        from ai.evaluation.sizing import SizingEvaluationConfig

        return SizingEvaluationConfig(days=self.days, market_seed=self.market_seed, alpha=alpha,
                                      start_ms=self.start_ms, horizon=self.horizon, forecaster=self.forecaster,
                                      forecaster_params=self.forecaster_params,
                                      train_sample_every=self.train_sample_every, band=self.band,
                                      window_fraction=self.window_fraction, costs=self.costs, bar_ms=self.bar_ms)


# --- the market the portfolio sees ------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """Bars on one grid (row = bar), the symbols' sectors, and the out-of-sample P(up)."""

    t_ms: np.ndarray  # (n,) open time of each row's bar
    symbols: tuple[str, ...]
    sectors: tuple[str, ...]
    close: np.ndarray  # (n, m)
    atr: np.ndarray  # (n, m), mean true range of the last ATR_BARS bars; NaN before
    p_up: np.ndarray  # (n, m), NaN where there is no out-of-sample probability

    def __post_init__(self) -> None:
        n, m = len(self.t_ms), len(self.symbols)
        for name in ("close", "atr", "p_up"):
            if getattr(self, name).shape != (n, m):
                raise ValueError(f"{name} must be ({n}, {m}), got {getattr(self, name).shape}")
        if len(self.sectors) != m:
            raise ValueError("one sector per symbol")
        if not np.all(np.isfinite(self.close)) or np.any(self.close <= 0):
            raise ValueError("close must be finite and positive")


def average_true_range(bars: np.ndarray, n: int = ATR_BARS) -> np.ndarray:
    """Causal mean true range of the last n bars ending at each bar (NaN for the first n - 1)."""
    high, low, close = bars[:, 2], bars[:, 3], bars[:, 4]
    prev = np.concatenate([[close[0]], close[:-1]])
    tr = np.maximum.reduce([high - low, np.abs(high - prev), np.abs(low - prev)])
    out = np.full(len(tr), np.nan)
    if len(tr) >= n:
        c = np.cumsum(np.concatenate([[0.0], tr]))
        out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def build_market(ohlcv: Mapping[str, np.ndarray], sectors: Mapping[str, str], ds, p_up: np.ndarray,
                 sample_idx: np.ndarray, bar_ms: int) -> Market:
    """The Market of simulated bars (every symbol on the same grid) with P(up) at `sample_idx`."""
    symbols = tuple(sorted(ohlcv))
    t = ohlcv[symbols[0]][:, 0].astype(np.int64)
    for s in symbols:
        if not np.array_equal(ohlcv[s][:, 0].astype(np.int64), t):
            raise ValueError(f"{s} is not on the common bar grid")
    close = np.column_stack([ohlcv[s][:, 4] for s in symbols])
    atr = np.column_stack([average_true_range(ohlcv[s]) for s in symbols])
    col = {s: j for j, s in enumerate(symbols)}
    p = np.full(close.shape, np.nan)
    rows = ((ds.t_ms[sample_idx] - t[0]) // bar_ms).astype(np.int64)
    cols = np.array([col[str(s)] for s in ds.symbol[sample_idx]], dtype=np.int64)
    p[rows, cols] = p_up[sample_idx]
    return Market(t_ms=t, symbols=symbols, sectors=tuple(sectors[s] for s in symbols), close=close, atr=atr, p_up=p)


# --- the meta-strategy as a pluggable chooser ----------------------------------------------------


class Chooser(Protocol):
    def choose(self, context: Context, *, explore: bool = False) -> Choice: ...

    def update(self, context: Context, profile_name: str, reward: float) -> None: ...


class DefaultOnly:
    """The meta-strategy turned off: every context trades the default profile."""

    def choose(self, context: Context, *, explore: bool = False) -> Choice:
        return Choice(DEFAULT_PROFILE, True, "meta-strategy off: the default profile")

    def update(self, context: Context, profile_name: str, reward: float) -> None:
        return None


# --- the portfolio ------------------------------------------------------------------------------


@dataclass
class _Position:
    col: int
    direction: PositionSide
    units: float  # base units held (notional / price)
    avg_price: float
    entry_row: int
    exit_row: int
    threshold: float
    profile: str
    context: Context | None
    atr_at_entry: float
    opened_usd: float  # notional at entry plus every add, for the return on what was put in
    pnl_usd: float = 0.0  # realized, net of every cost
    last_add_at: datetime | None = None
    adds: int = 0
    reductions: int = 0

    @property
    def sign(self) -> int:
        return self.direction.sign


@dataclass
class Path:
    """One configuration's run over a window: equity per row, per-period returns, counts."""

    rows: np.ndarray  # the rows scored (window start .. last exit)
    equity: np.ndarray  # equity / starting equity at each row's close, after its trades
    period_returns: np.ndarray
    period_end_rows: np.ndarray
    period_end_t_ms: np.ndarray
    period_equity: np.ndarray  # equity / starting equity at each period's end
    counts: dict[str, Any]
    closed: list[dict[str, Any]]  # one per closed position


def _dec(x: float, name: str) -> Decimal:
    return to_decimal(round(float(x), 2), name)


def _utc(t_ms: int) -> datetime:
    return datetime.fromtimestamp(int(t_ms) / 1000, UTC)


class Portfolio:
    """One configuration's book over one window (module doc: the order of a bar)."""

    def __init__(self, market: Market, parts: Parts, config: OrchestrationEvaluationConfig, chooser: Chooser,
                 *, explore: bool = False):
        self.m, self.parts, self.cfg, self.chooser, self.explore = market, parts, config, chooser, explore
        self.cash = config.equity_usd  # starting equity plus realized PnL net of costs
        self.open: dict[int, _Position] = {}
        self.day, self.day_start = None, config.equity_usd
        self.per_side = config.costs.per_side
        self.counts: dict[str, Any] = {
            "positions": 0, "adds": 0, "reductions": 0, "added_usd": 0.0, "reduced_usd": 0.0, "costs_usd": 0.0,
            "adds_overruled": 0, "risk_cut_entries": 0, "risk_refused_entries": 0,
            "profiles": {}, "stood_aside": 0, "fallbacks": 0, "rewards": 0, "pil_labels": {},
        }
        self.closed: list[dict[str, Any]] = []
        # Live choices are a function of the bandit's state, which moves only on an update: they
        # are kept per context until the next one (exploring choices are random and never kept).
        self._choices: dict[str, Choice] = {}
        self._actions: dict[float, np.ndarray] = {}

    # accounting
    def equity(self, row: int) -> float:
        px = self.m.close[row]
        return self.cash + sum(p.sign * p.units * (px[p.col] - p.avg_price) for p in self.open.values())

    def _notional(self, p: _Position, row: int) -> float:
        return p.units * float(self.m.close[row, p.col])

    def _trade_cost(self, usd: float) -> float:
        cost = self.per_side * usd
        self.counts["costs_usd"] += cost
        return cost

    def _reduce(self, p: _Position, row: int, usd: float) -> None:
        px = float(self.m.close[row, p.col])
        units = min(p.units, usd / px)
        pnl = p.sign * units * (px - p.avg_price) - self._trade_cost(units * px)
        self.cash += pnl
        p.pnl_usd += pnl
        p.units -= units

    def _close(self, p: _Position, row: int, why: str) -> None:
        self._reduce(p, row, p.units * float(self.m.close[row, p.col]))
        del self.open[p.col]
        reward = p.pnl_usd / p.opened_usd
        self.closed.append({"symbol": self.m.symbols[p.col], "direction": p.direction.value, "entry_row": p.entry_row,
                            "exit_row": row, "profile": p.profile, "opened_usd": p.opened_usd, "pnl_usd": p.pnl_usd,
                            "net_return": reward, "adds": p.adds, "reductions": p.reductions, "why": why})
        if p.context is not None:
            self.chooser.update(p.context, p.profile, reward)
            self._choices.clear()
            self.counts["rewards"] += 1

    def _buy_more(self, p: _Position, row: int, usd: float) -> None:
        px = float(self.m.close[row, p.col])
        units = usd / px
        p.avg_price = (p.avg_price * p.units + px * units) / (p.units + units)
        p.units += units
        p.opened_usd += usd
        cost = self._trade_cost(usd)
        self.cash -= cost
        p.pnl_usd -= cost

    def _signal(self, row: int, col: int, threshold: float) -> PositionSide | None:
        """The ensemble's current call at `threshold` (None: HOLD, or no probability)."""
        if threshold not in self._actions:  # vote()'s rule over the whole market, once per threshold
            self._actions[threshold] = actions_to_positions(self.m.p_up, threshold)
        a = self._actions[threshold][row, col]
        return PositionSide.LONG if a > 0 else PositionSide.SHORT if a < 0 else None

    # the risk validator, on the book as it stands (plus adds proposed this bar)
    def _risk(self, row: int, col: int, direction: PositionSide, size: Decimal, confidence: float,
              equity: float, proposed: Mapping[int, float],
              cut: Mapping[int, float] | None = None) -> tuple[bool, Decimal, tuple[str, ...]]:
        px = self.m.close[row]
        cut = cut or {}
        book = tuple(Exposure(self.m.symbols[p.col], p.direction,
                              _dec(max(0.0, self._notional(p, row) - cut.get(p.col, 0.0)), "notional"),
                              self.m.sectors[p.col]) for p in self.open.values())
        orders = tuple(OpenOrder(self.m.symbols[c], self.open[c].direction.entry_side, _dec(usd, "add"), False,
                                 self.m.sectors[c]) for c, usd in proposed.items())
        intent = Intent(symbol=self.m.symbols[col], side=direction.entry_side, size_usd=size, leverage=1,
                        confidence=to_decimal(round(confidence, 6), "confidence"), sector=self.m.sectors[col])
        snap = Snapshot(policy=self.cfg.policy, mode=Mode.NORMAL, equity_usd=_dec(equity, "equity"),
                        day_start_equity_usd=_dec(self.day_start, "day_start_equity"), positions=book,
                        open_orders=orders, intent=intent, reference_price=to_decimal(float(px[col]), "price"),
                        reference_price_age_seconds=0.0, orders_last_minute=0, recent_intent_keys=frozenset(),
                        now=_utc(self.m.t_ms[row]))
        v = validate(snap)
        return v.approved, v.max_allowed_size_usd, v.rules

    def _context(self, row: int, col: int) -> Context | None:
        if row + 1 < MIN_CLOSES:
            return None
        closes = self.m.close[max(0, row + 1 - REGIME_CLOSES):row + 1, col]
        return Context(regime_of(closes), self.m.sectors[col])

    def _choose(self, context: Context | None) -> Choice:
        if context is None:
            return Choice(DEFAULT_PROFILE, True, "too little history for a regime")
        if self.explore:
            return self.chooser.choose(context, explore=True)
        if context.key not in self._choices:
            self._choices[context.key] = self.chooser.choose(context)
        return self._choices[context.key]

    def _enter(self, row: int, entries_until: int, exit_limit: int, equity: float) -> None:
        if len(self.open) >= self.cfg.policy.max_open_positions or equity <= 0:
            return  # the validator's open_positions rule would refuse every new symbol
        p_row = self.m.p_up[row]
        conf = np.where(np.isfinite(p_row), np.maximum(p_row, 1.0 - p_row), 0.0)
        # the lowest threshold any profile could ask for; each candidate's own profile decides
        lowest = min(p.ensemble_threshold for p in PROFILES) if self.parts.meta else DEFAULT_PROFILE.ensemble_threshold
        candidates = [int(c) for c in np.argsort(-conf, kind="stable") if conf[c] >= lowest and int(c) not in self.open]
        for col in candidates:
            if len(self.open) >= self.cfg.policy.max_open_positions:
                break
            context = self._context(row, col)
            choice = self._choose(context)
            prof: Profile = choice.profile
            self.counts["fallbacks"] += int(choice.fallback)
            if not prof.trade:
                self.counts["stood_aside"] += 1
                continue
            if row + prof.horizon_bars > exit_limit or row > entries_until:
                continue
            direction = self._signal(row, col, prof.ensemble_threshold)
            if direction is None:
                continue
            p_win = float(p_row[col]) if direction is PositionSide.LONG else 1.0 - float(p_row[col])
            size = final_size_usd(agent_fraction=1.0, allowed_size_usd=self.cfg.allowed_fraction * equity,
                                  kelly=kelly_fraction(p_win, KELLY_PAYOFF), equity_usd=equity,
                                  max_position_usd=self.cfg.policy.max_position_usd)
            if size <= 0:
                continue
            approved, room, _ = self._risk(row, col, direction, size, float(conf[col]), equity, {})
            if not approved:
                if room <= 0:
                    self.counts["risk_refused_entries"] += 1
                    continue
                size = room  # the validator's room: an intent at max_allowed passes
                self.counts["risk_cut_entries"] += 1
            px = float(self.m.close[row, col])
            usd = float(size)
            cost = self._trade_cost(usd)
            self.cash -= cost
            atr = self.m.atr[row, col]
            self.open[col] = _Position(col=col, direction=direction, units=usd / px, avg_price=px, entry_row=row,
                                       exit_row=row + prof.horizon_bars, threshold=prof.ensemble_threshold,
                                       profile=prof.name, context=context,
                                       atr_at_entry=float(atr) if np.isfinite(atr) else math.nan,
                                       opened_usd=usd, pnl_usd=-cost)
            self.counts["positions"] += 1
            self.counts["profiles"][prof.name] = self.counts["profiles"].get(prof.name, 0) + 1

    def _label(self, p: _Position, row: int, signal: PositionSide | None) -> tuple[str, Decimal]:
        mark = float(self.m.close[row, p.col])
        if not self.parts.pil:
            # PIL off: PAL takes every position in profit for a winner
            pnl = to_decimal(round(p.sign * (mark / p.avg_price - 1.0) * 100, 6), "pnl_pct")
            return (pil.WINNER if pnl >= 0 else pil.LOSER), pnl
        atr_now = self.m.atr[row, p.col]
        facts = pil.PositionFacts(
            side=p.direction, entry_price=to_decimal(p.avg_price, "entry_price"), mark_price=to_decimal(mark, "mark"),
            bars_open=row - p.entry_row, horizon_bars=DEFAULT_PROFILE.horizon_bars, signal_side=signal,
            atr_now=to_decimal(float(atr_now), "atr_now") if np.isfinite(atr_now) and atr_now > 0 else None,
            atr_at_entry=(to_decimal(p.atr_at_entry, "atr_at_entry")
                          if np.isfinite(p.atr_at_entry) and p.atr_at_entry > 0 else None))
        a = pil.classify(facts)
        return a.label, a.pnl_pct

    def _orchestrate(self, row: int, equity: float) -> None:
        if not (self.parts.pba or self.parts.pal) or not self.open or equity <= 0:
            return
        now = _utc(self.m.t_ms[row])
        eq = _dec(equity, "equity")
        directives: list[hfos.Directive] = []
        day_dd = max(0.0, (self.day_start - equity) / self.day_start * 100) if self.day_start > 0 else 0.0
        directives += hfos.own_directives(drawdown_pct=to_decimal(round(day_dd, 6), "drawdown_pct"),
                                          max_drawdown_for_amplification_pct=self.cfg.max_drawdown_for_amplification_pct)
        notional = {c: self._notional(p, row) for c, p in self.open.items()}
        col = {s: j for j, s in enumerate(self.m.symbols)}
        cut: dict[int, float] = {}
        if self.parts.pba:
            holdings = [pba.Holding(self.m.symbols[c], self.m.sectors[c], _dec(v, "notional"))
                        for c, v in notional.items()]
            decision = pba.balance(eq, holdings, self.cfg.caps)
            for r in decision.reductions:
                cut[col[r.symbol]] = float(r.amount_usd)
                directives.append(hfos.Directive(hfos.PBA, "reduce", r.symbol, "; ".join(r.reasons), r.amount_usd))
        if self.parts.pal:
            proposed: dict[int, float] = {}
            sector_cap = float(self.cfg.caps.max_sector_exposure_pct) / 100 * equity
            total_cap = float(self.cfg.caps.max_total_exposure_pct) / 100 * equity
            near = float(self.cfg.amplifier.min_profit_pct) - 0.01
            for c in sorted(self.open):
                p = self.open[c]
                if p.sign * (float(self.m.close[row, c]) / p.avg_price - 1.0) * 100 < near:
                    continue  # well short of PAL's minimum profit: PAL holds whatever PIL says
                signal = self._signal(row, c, p.threshold)
                label, pnl_pct = self._label(p, row, signal)
                self.counts["pil_labels"][label] = self.counts["pil_labels"].get(label, 0) + 1
                want = _dec(notional[c] * float(self.cfg.amplifier.factor), "add")
                if label != pil.WINNER or pnl_pct < self.cfg.amplifier.min_profit_pct or want <= 0:
                    continue  # PAL would hold: spare the risk validator's work
                conf = self.m.p_up[row, c]
                conf = max(conf, 1 - conf) if np.isfinite(conf) else 0.5
                # the room after this pass's reductions and earlier adds, as the orchestrator's pass
                # computes it: the risk policy's (by its validator), and PBA's caps when it runs
                _, room, _ = self._risk(row, c, p.direction, want, conf, equity, proposed, cut)
                if self.parts.pba:
                    after = {k: v - cut.get(k, 0.0) + proposed.get(k, 0.0) for k, v in notional.items()}
                    in_sector = sum(v for k, v in after.items() if self.m.sectors[k] == self.m.sectors[c])
                    gross = sum(after.values())
                    room = min(room, _dec(max(0.0, min(sector_cap - in_sector, total_cap - gross)), "room"))
                amp = pal.decide(label=label, pnl_pct=pnl_pct, side=p.direction, signal_side=signal,
                                 notional_usd=_dec(notional[c], "notional"), room_usd=room, last_add_at=p.last_add_at,
                                 now=now, config=self.cfg.amplifier)
                if amp.add_size_usd > 0:
                    proposed[c] = float(amp.add_size_usd)
                    directives.append(hfos.Directive(hfos.PAL, "add", self.m.symbols[c], amp.reason, amp.add_size_usd))
        hfos.check_directives(directives, {self.m.symbols[c]: _dec(v, "notional") for c, v in notional.items()})
        resolution = hfos.resolve(directives)
        self.counts["adds_overruled"] += sum(1 for o in resolution.overruled if o.directive.layer == hfos.PAL)
        for d in resolution.accepted:
            if d.layer == hfos.PBA and d.kind == "reduce":
                p = self.open[col[d.symbol]]
                self._reduce(p, row, float(d.amount_usd))
                p.reductions += 1
                self.counts["reductions"] += 1
                self.counts["reduced_usd"] += float(d.amount_usd)
                if p.units * float(self.m.close[row, p.col]) < 0.005:
                    self._close(p, row, "closed by PBA")
            elif d.layer == hfos.PAL and d.kind == "add":
                p = self.open[col[d.symbol]]
                self._buy_more(p, row, float(d.amount_usd))
                p.last_add_at = now
                p.adds += 1
                self.counts["adds"] += 1
                self.counts["added_usd"] += float(d.amount_usd)

    def step(self, row: int, entries_until: int, exit_limit: int) -> float:
        """One bar: exits, entries (up to `entries_until`, closing by `exit_limit`), then PBA's
        reductions and PAL's adds through HFOS. Returns equity / starting equity after it."""
        for p in [p for p in self.open.values() if p.exit_row <= row]:
            self._close(p, row, "horizon")
        equity = self.equity(row)
        day = int(self.m.t_ms[row]) // DAY_MS
        if day != self.day:
            self.day, self.day_start = day, equity
        if row <= entries_until:
            self._enter(row, entries_until, exit_limit, equity)
            equity = self.equity(row)
        self._orchestrate(row, equity)
        return self.equity(row) / self.cfg.equity_usd

    def run(self, first_row: int, entries_until: int, exit_limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Trade rows first_row..exit_limit; new positions only up to `entries_until` and only when
        they would close by `exit_limit`. Returns (rows, equity / starting equity at each)."""
        if not 0 <= first_row <= entries_until <= exit_limit < len(self.m.t_ms):
            raise ValueError(f"rows out of order or off the market: {first_row}, {entries_until}, {exit_limit}")
        rows = np.arange(first_row, exit_limit + 1)
        eq = np.array([self.step(int(row), entries_until, exit_limit) for row in rows])
        if self.open:  # entries close by exit_limit, so nothing is left; kept as a guard
            for p in list(self.open.values()):
                self._close(p, exit_limit, "end of the window")
            eq[-1] = self.equity(exit_limit) / self.cfg.equity_usd
        return rows, eq

    def exposures(self, row: int) -> tuple[dict[str, float], float]:
        """(gross notional per sector, gross notional) of the book at the row's close."""
        out: dict[str, float] = {}
        for p in self.open.values():
            out[self.m.sectors[p.col]] = out.get(self.m.sectors[p.col], 0.0) + self._notional(p, row)
        return out, sum(out.values())


def run_configuration(market: Market, parts: Parts, config: OrchestrationEvaluationConfig, *,
                      evaluation: tuple[int, int, int], warmup: tuple[int, int, int] | None = None,
                      chooser: Chooser | None = None) -> Path:
    """One configuration: with the meta-strategy on, the bandit trains on the warm-up window
    (exploring) and then runs the evaluation window (live choice); each window starts flat at
    the starting equity. Windows are (first row, last entry row, last exit row)."""
    if chooser is None:
        chooser = ContextualBandit(seed=config.meta_seeds[0]) if parts.meta else DefaultOnly()
    warm_counts = None
    if parts.meta and warmup is not None:
        w = Portfolio(market, parts, config, chooser, explore=True)
        w.run(*warmup)
        warm_counts = {"positions": w.counts["positions"], "rewards": w.counts["rewards"],
                       "profiles": dict(w.counts["profiles"])}
    book = Portfolio(market, parts, config, chooser, explore=False)
    rows, eq = book.run(*evaluation)
    ends = np.arange(config.horizon - 1, len(rows), config.horizon)
    if len(ends) == 0 or ends[-1] != len(rows) - 1:
        ends = np.append(ends, len(rows) - 1)
    level = np.concatenate([[1.0], eq[ends]])
    counts = {**book.counts, "warmup": warm_counts}
    return Path(rows=rows, equity=eq, period_returns=level[1:] / level[:-1] - 1.0, period_end_rows=rows[ends],
                period_end_t_ms=market.t_ms[rows[ends]].astype(np.int64), period_equity=eq[ends], counts=counts,
                closed=book.closed)


# --- figures, comparisons, verdicts --------------------------------------------------------------


@dataclass
class Outcome:
    """One configuration over one or several runs (one per meta-strategy seed; a configuration
    without the meta-strategy is deterministic and runs once). Its per-period return is the mean
    over the runs: the same capital split evenly across them, which averages out the bandit's
    own randomness (one draw of it would otherwise ride on every comparison)."""

    runs: list[Path]

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("an outcome needs at least one run")
        first = self.runs[0].period_end_rows
        if any(not np.array_equal(r.period_end_rows, first) for r in self.runs):
            raise ValueError("every run of an outcome must score the same periods")

    @property
    def period_returns(self) -> np.ndarray:
        return np.mean([r.period_returns for r in self.runs], axis=0)

    @property
    def period_end_t_ms(self) -> np.ndarray:
        return self.runs[0].period_end_t_ms

    @property
    def equity(self) -> np.ndarray:
        return np.cumprod(1.0 + self.period_returns)


def run_outcome(market: Market, parts: Parts, config: OrchestrationEvaluationConfig, *,
                evaluation: tuple[int, int, int], warmup: tuple[int, int, int] | None = None) -> Outcome:
    seeds = config.meta_seeds if parts.meta else config.meta_seeds[:1]
    return Outcome([run_configuration(market, parts, config, evaluation=evaluation, warmup=warmup,
                                      chooser=ContextualBandit(seed=s) if parts.meta else DefaultOnly())
                    for s in seeds])


_MEAN_COUNTS = ("positions", "adds", "reductions", "added_usd", "reduced_usd", "costs_usd", "adds_overruled",
                "stood_aside", "fallbacks", "risk_cut_entries", "risk_refused_entries")


def figures(outcome: Outcome, periods_per_year: float) -> dict[str, Any]:
    """Headline figures of one configuration (means over its runs; equity of the mean portfolio,
    marked at each period's end)."""
    ret, eq = outcome.period_returns, outcome.equity
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))
    dd = 1.0 - np.concatenate([[1.0], eq]) / peak
    sd = ret.std(ddof=1) if len(ret) > 1 else 0.0
    runs = outcome.runs
    mean = {k: float(np.mean([r.counts[k] for r in runs])) for k in _MEAN_COUNTS}
    net = np.array([x["net_return"] for r in runs for x in r.closed])
    profiles: dict[str, float] = {}
    labels: dict[str, float] = {}
    for r in runs:
        for k, v in r.counts["profiles"].items():
            profiles[k] = profiles.get(k, 0.0) + v / len(runs)
        for k, v in r.counts["pil_labels"].items():
            labels[k] = labels.get(k, 0.0) + v / len(runs)
    return {
        "total_return": float(eq[-1] - 1.0) if len(eq) else 0.0,
        "sharpe": float(ret.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else None,
        "max_drawdown": float(dd.max()),
        "n_runs": len(runs),
        "total_return_per_run": [float(r.equity[-1] - 1.0) for r in runs],
        "n_positions": mean["positions"], "n_adds": mean["adds"], "n_reductions": mean["reductions"],
        "added_usd": round(mean["added_usd"], 2), "reduced_usd": round(mean["reduced_usd"], 2),
        "costs_usd": round(mean["costs_usd"], 2), "adds_overruled_by_hfos": mean["adds_overruled"],
        "hit_rate": float((net > 0).mean()) if len(net) else None,
        "mean_net_return_per_position": float(net.mean()) if len(net) else None,
        "profiles": {k: round(v, 1) for k, v in profiles.items()}, "candidates_stood_aside": mean["stood_aside"],
        "meta_fallbacks": mean["fallbacks"], "risk_cut_entries": mean["risk_cut_entries"],
        "risk_refused_entries": mean["risk_refused_entries"],
        "pil_labels_near_min_profit": {k: round(v, 1) for k, v in labels.items()},
        "warmup_positions": [r.counts["warmup"]["positions"] for r in runs if r.counts.get("warmup")],
        "equity": {"t_ms": [int(x) for x in outcome.period_end_t_ms], "equity": [float(x) for x in eq]},
    }


def word(iv: Mapping[str, Any]) -> str:
    """The verdict read from the interval of full - without the part."""
    if iv["lo"] is None:
        return INDISTINGUISHABLE
    if iv["lo"] > 0:
        return HELPS
    if iv["hi"] < 0:
        return HURTS
    return INDISTINGUISHABLE


def compare(full: Outcome, ablated: Outcome, *, seed: int = 0) -> dict[str, Any]:
    """The paired per-period difference full - ablated with its interval and the verdict."""
    if not np.array_equal(full.period_end_t_ms, ablated.period_end_t_ms):
        raise ValueError("the two configurations must score the same periods")
    diff = full.period_returns - ablated.period_returns
    iv = bootstrap_mean_interval(diff, seed=seed)
    return {"difference_per_period": iv, "verdict": word(iv), "identical": bool(np.all(diff == 0))}


def recommend(verdicts: Mapping[str, Mapping[str, str]],
              isolated: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """Per part: ON only when it helps on the demo market, both against the full system without
    it and (PBA, PAL, PIL) alone with the meta-strategy off in both arms, and does not hurt on the
    null market. The bandit's randomness rides on the first comparison (a part that changes one
    add changes what the bandit learns after it); the second is the part's own effect."""
    out = {}
    for part in PARTS:
        demo, null = verdicts[DEMO][part], verdicts.get(NULL, {}).get(part)
        alone = (isolated or {}).get(DEMO, {}).get(part)
        aside = f"; alone, with the meta-strategy off in both arms: {alone}" if alone else ""
        if demo == HELPS and alone in (None, HELPS) and null != HURTS:
            out[part] = {"default": "on", "reason": f"helps on the demo market beyond noise{aside}; on the null "
                                                    f"market {null or 'not measured'}"}
        elif demo == HELPS and alone not in (None, HELPS):
            out[part] = {"default": "off", "reason": f"helps on the demo market against the full system without it, "
                                                     f"but not alone ({alone}): the gain rides on the meta-strategy's "
                                                     "randomness, not on the part"}
        elif demo == HELPS:
            out[part] = {"default": "off", "reason": "helps on the demo market but hurts on the null market, "
                                                     "where there is nothing to earn: its gain is not the "
                                                     f"signal's{aside}"}
        else:
            out[part] = {"default": "off", "reason": f"does not help: {demo} on the demo market (paired difference "
                                                     "of net per-period returns, 95% block-bootstrap interval)"
                                                     f"{aside}"}
    return out


ProgressFn = Callable[[str], None]


@dataclass
class MarketRun:
    """One market: its bars and probabilities, windows, and every configuration (`configurations()`)."""

    name: str
    alpha: float
    market: Market
    evaluation: tuple[int, int, int]
    warmup: tuple[int, int, int]
    outcomes: dict[str, Outcome]
    signal_share: float  # share of the evaluation window's P(up) clearing the default threshold, as forecast
    stretch: dict[str, float]  # per window, the factor P(up) - 0.5 was multiplied by (1: as forecast)
    seconds: float


def windows_rows(market: Market, ds, windows: Mapping[str, np.ndarray], horizon: int,
                 bar_ms: int) -> dict[str, tuple[int, int, int]]:
    """(first row, last entry row, last exit row) of the warm-up and evaluation windows: entries
    on the window's bars, exits by one horizon after its last bar (where its labels end)."""
    out = {}
    for name, key in (("warmup", "agent"), ("evaluation", "eval")):
        t = ds.t_ms[windows[key]]
        lo = int((t.min() - market.t_ms[0]) // bar_ms)
        hi = int((t.max() - market.t_ms[0]) // bar_ms)
        out[name] = (lo, hi, min(hi + horizon, len(market.t_ms) - 1))
    if out["warmup"][2] >= out["evaluation"][0]:
        raise ValueError("the warm-up window's positions would close inside the evaluation window")
    return out


def prepare_market(config: OrchestrationEvaluationConfig, alpha: float, say: ProgressFn) -> tuple[Market, dict]:
    """Simulate, forecast out of sample (once: the probabilities do not depend on the parts),
    and lay out the windows."""
    from ai.evaluation.sizing import out_of_sample_probabilities, simulate_market
    from ai.features.dataset import build_dataset

    sc = config.sizing_config(alpha)
    say(f"simulating {config.days} days (alpha {alpha}, seed {config.market_seed})")
    ohlcv, sectors = simulate_market(sc)
    ds = build_dataset(ohlcv, horizon=config.horizon, band=0.0, sample_every=1, sectors=sectors)
    say("out-of-sample probabilities (purged walk-forward, 2 folds)")
    p_up, windows, layout = out_of_sample_probabilities(ds, sc)
    layout.check()
    idx = np.concatenate([windows["agent"], windows["eval"]])
    market = build_market(ohlcv, sectors, ds, p_up, idx, config.bar_ms)
    return market, windows_rows(market, ds, windows, config.horizon, config.bar_ms)


def window_spread(market: Market, window: tuple[int, int, int]) -> float:
    """The standard deviation of the window's out-of-sample P(up)."""
    p = market.p_up[window[0]:window[1] + 1]
    p = p[np.isfinite(p)]
    return float(p.std()) if len(p) > 1 else 0.0


def stretched(market: Market, windows: Mapping[str, tuple[int, int, int]],
              target: Mapping[str, float]) -> tuple[Market, dict[str, float]]:
    """The market with each window's P(up) - 0.5 scaled so that its spread matches `target`
    (clipped to [0.001, 0.999]): same directions and ranking, the demo's confidence."""
    p = market.p_up.copy()
    factors = {}
    for name, (lo, hi, _) in windows.items():
        own = window_spread(market, windows[name])
        k = target[name] / own if own > 0 else 1.0
        p[lo:hi + 1] = np.clip(0.5 + (p[lo:hi + 1] - 0.5) * k, 0.001, 0.999)
        factors[name] = float(k)
    return Market(t_ms=market.t_ms, symbols=market.symbols, sectors=market.sectors, close=market.close,
                  atr=market.atr, p_up=p), factors


def signal_share(market: Market, window: tuple[int, int, int], threshold: float) -> float:
    p = market.p_up[window[0]:window[1] + 1]
    p = p[np.isfinite(p)]
    return float((np.maximum(p, 1 - p) >= threshold).mean()) if len(p) else 0.0


def run_market(name: str, alpha: float, config: OrchestrationEvaluationConfig, progress: ProgressFn | None = None,
               *, stretch_to: Mapping[str, float] | None = None) -> MarketRun:
    """Every configuration on one market. `stretch_to` (per window, a P(up) spread): see
    `stretched`; the null market uses it so that there is a book for the parts to act on."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    market, rows = prepare_market(config, alpha, say)
    share = signal_share(market, rows["evaluation"], DEFAULT_PROFILE.ensemble_threshold)
    factors = {w: 1.0 for w in rows}
    if stretch_to is not None:
        market, factors = stretched(market, rows, stretch_to)
        say(f"{name} market: {share:.2%} of the evaluation window's probabilities clear the threshold as forecast; "
            f"P(up) - 0.5 stretched x{factors['evaluation']:.2f} to the demo market's spread")
    outcomes = {}
    for cname, parts in configurations().items():
        t0 = time.perf_counter()
        outcomes[cname] = run_outcome(market, parts, config, evaluation=rows["evaluation"], warmup=rows["warmup"])
        o = outcomes[cname]
        say(f"{name} market, {cname}: {o.equity[-1] - 1:+.2%} net, "
            f"{np.mean([r.counts['positions'] for r in o.runs]):.0f} positions, {len(o.runs)} run(s) "
            f"({time.perf_counter() - t0:.1f} s)")
    return MarketRun(name=name, alpha=alpha, market=market, evaluation=rows["evaluation"], warmup=rows["warmup"],
                     outcomes=outcomes, signal_share=share, stretch=factors, seconds=time.perf_counter() - started)


def summarize(runs: Sequence[MarketRun], config: OrchestrationEvaluationConfig) -> dict[str, Any]:
    periods_per_year = BARS_PER_YEAR_5M * (300_000 / config.bar_ms) / config.horizon
    markets, verdicts, isolated = {}, {}, {}
    for r in runs:
        full = r.outcomes[FULL]
        parts = {p: compare(full, r.outcomes[f"without_{p}"], seed=config.bootstrap_seed) for p in PARTS}
        verdicts[r.name] = {p: c["verdict"] for p, c in parts.items()}
        alone = {p: compare(r.outcomes["without_meta"], r.outcomes[f"without_meta_{p}"], seed=config.bootstrap_seed)
                 for p in ISOLATED}
        isolated[r.name] = {p: c["verdict"] for p, c in alone.items()}
        t = r.market.t_ms
        markets[r.name] = {
            "alpha": r.alpha, "seed": config.market_seed, "days": config.days, "n_symbols": len(r.market.symbols),
            "planted": ("the effect is planted by the simulator (SIM_ALPHA); it says nothing about a real market"
                        if r.alpha else "nothing planted: a null market, where no part should help"),
            "evaluation_utc": [_iso(t[r.evaluation[0]]), _iso(t[r.evaluation[2]])],
            "warmup_utc": [_iso(t[r.warmup[0]]), _iso(t[r.warmup[2]])],
            "signal_share_as_forecast": r.signal_share, "probability_stretch": r.stretch,
            "n_periods": len(full.period_returns), "seconds": round(r.seconds, 1),
            "configurations": {name: figures(o, periods_per_year) for name, o in r.outcomes.items()},
            "parts": parts, "parts_alone": alone,
        }
    rec = recommend(verdicts, isolated)
    out = {
        "config": {"days": config.days, "market_seed": config.market_seed, "horizon_bars": config.horizon,
                   "forecaster": config.forecaster, "taker_fee_rate": config.costs.taker_fee_rate,
                   "slippage_rate": config.costs.slippage_rate, "equity_usd": config.equity_usd,
                   "sizing": (f"quarter Kelly of P(win), payoff 1, capped at {config.allowed_fraction:.0%} of equity "
                              f"and {config.policy.max_position_usd} USD, then the risk validator's room"),
                   "caps": {"max_sector_exposure_pct": str(config.caps.max_sector_exposure_pct),
                            "max_positions": config.caps.max_positions,
                            "max_total_exposure_pct": str(config.caps.max_total_exposure_pct)},
                   "amplifier": {"min_profit_pct": str(config.amplifier.min_profit_pct),
                                 "factor": str(config.amplifier.factor),
                                 "window_seconds": config.amplifier.window_seconds},
                   "hfos_max_drawdown_for_amplification_pct": str(config.max_drawdown_for_amplification_pct),
                   "meta_seeds": list(config.meta_seeds), "bootstrap_seed": config.bootstrap_seed},
        "markets": markets, "verdicts": verdicts, "verdicts_alone": isolated, "recommended_defaults": rec,
    }
    out["statements"] = statements(out)
    return out


def evaluate_orchestration(config: OrchestrationEvaluationConfig | None = None, *, null_market: bool = True,
                           progress: ProgressFn | None = None) -> dict[str, Any]:
    """The whole ablation (module doc) on the demo market and, unless told not to, the null
    market; a JSON-ready dict."""
    config = config or OrchestrationEvaluationConfig()
    demo = run_market(DEMO, config.alpha, config, progress)
    runs = [demo]
    if null_market:
        spread = {w: window_spread(demo.market, rows) for w, rows in (("warmup", demo.warmup),
                                                                       ("evaluation", demo.evaluation))}
        runs.append(run_market(NULL, 0.0, config, progress, stretch_to=spread))
    return summarize(runs, config)


def statements(s: Mapping[str, Any]) -> list[str]:
    lines = []
    for m in s["markets"].values():
        what = (f"the simulated demo market (planted effect, alpha {m['alpha']})" if m["alpha"]
                else "a simulated null market (nothing planted)")
        lines.append(f"Orchestration ablation on {what}: evaluation {m['evaluation_utc'][0]} to "
                     f"{m['evaluation_utc'][1]} UTC, {m['n_periods']} periods of {s['config']['horizon_bars']} bars, "
                     "net of costs.")
        k = m["probability_stretch"]["evaluation"]
        if k != 1.0:
            lines.append(f"  As forecast, {m['signal_share_as_forecast']:.2%} of its probabilities clear the 0.6 "
                         f"threshold (the models say nothing here); to give the parts a book to act on, P(up) - 0.5 "
                         f"is stretched x{k:.2f} to the demo market's spread: the book then trades noise.")
        full = m["configurations"][FULL]
        lines.append(f"  full: {full['total_return']:+.2%}, Sharpe {_num(full['sharpe'])}, max DD "
                     f"{full['max_drawdown']:.2%}, {full['n_positions']:.0f} positions, {full['n_adds']:.1f} adds, "
                     f"{full['n_reductions']:.0f} reductions (mean of {full['n_runs']} meta-strategy seeds).")
        for part in PARTS:
            f = m["configurations"][f"without_{part}"]
            c = m["parts"][part]
            diff = _difference(c, "full - without ")
            lines.append(f"  without {part}: {f['total_return']:+.2%}, max DD {f['max_drawdown']:.2%}; {diff}: "
                         f"{PART_NAMES[part]} {c['verdict'].upper()}.")
        base = m["configurations"]["without_meta"]
        for part in ISOLATED:
            f = m["configurations"][f"without_meta_{part}"]
            c = m["parts_alone"][part]
            diff = _difference(c)
            lines.append(f"  meta-strategy off in both arms, {part} on ({base['total_return']:+.2%}) vs off "
                         f"({f['total_return']:+.2%}): {diff}: {part.upper()} alone {c['verdict'].upper()}.")
    for part, r in s["recommended_defaults"].items():
        lines.append(f"Default for {PART_NAMES[part]}: {r['default'].upper()} ({r['reason']}).")
    return lines


def _difference(c: Mapping[str, Any], prefix: str = "") -> str:
    """One comparison's per-period difference and its interval, as the statements print it."""
    if c["identical"]:
        return "identical paths"
    iv = c["difference_per_period"]
    return f"{prefix}{_bp(iv['mean'])} per period, 95% [{_bp(iv['lo'])}, {_bp(iv['hi'])}]"


def _bp(x) -> str:
    if x is None:
        return "n/a"
    bp = x * 1e4
    return f"{bp:+.2f} bp" if bp == 0 or abs(bp) >= 0.005 else f"{bp:+.1e} bp"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _iso(t_ms) -> str:
    return datetime.fromtimestamp(int(t_ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
