"""A seeded market simulator with the stylized facts of crypto markets (pure numpy, no Django).

Per 5m bar and symbol the log return is

    r = sd_base * season(hour) * regime_vol * injected_vol * sqrt(h) * z   (diffusion)
        + trend drift (trending regime) - pull to a moving anchor (mean-reverting regime)
        - a very weak pull to the start price (keeps long demo runs away from 0 and infinity)
        + injected drift + jumps

- z = sqrt(m) f_market + sqrt(s) f_sector + sqrt(1 - m - s) e_symbol, each a unit-variance
  Student-t: a market factor plus sector factors, so returns correlate more within a sector.
- h follows GARCH(1,1) on z (mean 1): volatility clustering; with the t innovations, fat tails.
- Jumps: Poisson per symbol plus rare market-wide jumps, more frequent in the high-vol regime.
- A hidden market regime (trending, mean-reverting, high-volatility) switches by a Markov chain.
- Volume rises with |z| and with the conditional volatility, follows a UTC-hour profile and
  has a persistent (AR(1)) log component.
- Funding for perpetuals every 8 h (00, 08, 16 UTC): 0.01% plus a lean with the trend of the
  last ~8 h, clipped to +-0.3%; computed from bars already closed (no look-ahead).
- OHLC from a Brownian bridge inside each bar between open and close; open = previous close;
  prices rounded to the tick (high up, low down), base volume down to the lot.

A spot symbol can `track` a perpetual: same latent price plus a small mean-reverting basis.

**The planted effect (`alpha`, setting SIM_ALPHA).** On top of the stylized facts, one causal
effect in two parts, both about idiosyncratic news (the shocks e, not the market or sector
factors): news that moved a symbol's sector peers reaches the symbol over the next hour, and
the symbol's own news is overdone and partly given back. Each primary symbol's bar gets the
drift

    alpha * sd_t * d_{t-1},    d = EMA (span `alpha_span_bars`, 12 bars) of
                               (mean e of the symbol's sector peers - the symbol's own e) / sqrt(2),
                               scaled to unit variance

Units: `alpha` is the next bar's expected return in units of that bar's volatility, per
standard deviation of that signal. A symbol without peers gets nothing. The two parts keep a
momentum rule on the symbol's own returns from taking the effect (its own hour predicts the
opposite of the peers' echo), while the features `ret_12` and `sector_peer_ret_12` (the
peers' last hour net of the market) together see it. It reads only bars already closed, it is
bounded (it feeds on shocks, not on its own drift), and at 0 the market is exactly the one
without it (same draws, same arrays). It is planted: a model that finds an edge here finds
this, and that says nothing about a real market.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BAR_MS = 300_000  # the simulator's grid: 5m bars aligned to UTC
BARS_PER_DAY = 86_400_000 // BAR_MS
HOUR_MS = 3_600_000
FUNDING_INTERVAL_MS = 8 * HOUR_MS  # Binance USDⓈ-M: 00:00, 08:00, 16:00 UTC
# Random numbers come in blocks of one day of bars: large enough that numpy's per-call overhead
# vanishes, small enough that advancing by one bar costs ~1 ms.
BLOCK_BARS = BARS_PER_DAY
STATE_VERSION = 2  # 2 added the planted effect's state (absent in 1: zeros)

TRENDING, MEAN_REVERTING, HIGH_VOL = 0, 1, 2
REGIMES = ("trending", "mean_reverting", "high_vol")

# Relative quote volume by UTC hour, shaped like Binance perpetuals: busy at the daily open
# (00 UTC) and around the US open (13-16 UTC), quiet in the late Asian night (04-07 UTC).
# Normalized to mean 1 below.
HOURLY_VOLUME_PROFILE = np.array([
    1.35, 1.15, 1.00, 0.85, 0.72, 0.65, 0.62, 0.66, 0.80, 0.88, 0.90, 0.92,
    1.00, 1.18, 1.40, 1.45, 1.35, 1.20, 1.10, 1.05, 1.05, 1.05, 1.10, 1.20,
])


@dataclass(frozen=True)
class AssetSpec:
    symbol: str
    sector: str
    perpetual: bool
    start_price: float
    tick_size: float
    lot_size: float
    daily_vol: float  # standard deviation of daily log returns, e.g. 0.03
    daily_quote_volume: float  # typical quote volume per day (USDT)
    market_r2: float  # share of diffusive variance explained by the market factor
    sector_r2: float  # ... by the sector factor
    tracks: str | None = None  # a spot symbol following this perpetual's price (plus basis)


@dataclass(frozen=True)
class SimConfig:
    assets: tuple[AssetSpec, ...]
    start_time_ms: int  # open time of bar 0, aligned to 5m
    t_df: float = 5.0  # Student-t degrees of freedom of the factor innovations (> 4: finite kurtosis)
    garch_alpha: float = 0.07
    garch_beta: float = 0.915  # alpha + beta = 0.985: volatility shocks halve in ~4 h of 5m bars
    max_variance_ratio: float = 40.0  # cap on h (variance multiple), a guard against runaway paths
    jumps_per_day: float = 0.5  # idiosyncratic jumps per symbol per day (normal regimes)
    market_jumps_per_day: float = 0.15
    jump_sd_daily_vol: float = 0.4  # jump size sd as a multiple of the symbol's daily vol
    jump_down_prob: float = 0.55  # crypto crashes more often than it squeezes
    high_vol_jump_multiplier: float = 3.0
    # Regimes: mean duration in bars, vol multiplier, volume multiplier; exits split by row.
    regime_duration_bars: tuple[float, float, float] = (288.0, 576.0, 96.0)
    regime_vol: tuple[float, float, float] = (1.1, 0.85, 2.2)
    regime_volume: tuple[float, float, float] = (1.1, 0.9, 1.6)
    regime_exit_split: tuple[tuple[float, float, float], ...] = ((0, 0.7, 0.3), (0.6, 0, 0.4), (0.4, 0.6, 0))
    trend_strength: float = 1.0  # trend drift per day in units of the symbol's daily vol
    mean_reversion_per_bar: float = 0.01  # pull toward the anchor (half-life ~70 bars)
    anchor_span_bars: int = BARS_PER_DAY  # EMA span of the mean-reversion anchor
    long_run_half_life_days: float = 120.0
    volume_abs_return_coef: float = 0.8  # volume multiplier 1 + k|z| (normalized)
    volume_vol_elasticity: float = 0.8  # volume ~ (conditional vol / base vol) ** elasticity
    volume_ar: float = 0.97
    volume_log_sd: float = 0.3  # stationary sd of the persistent log-volume component
    funding_base: float = 0.0001  # 0.01% per 8 h, the usual interest component
    funding_trend_coef: float = 0.01  # rate per unit of 8h log return: a 10% rally in 8 h adds 0.1%
    funding_noise_sd: float = 0.00005
    funding_cap: float = 0.003
    basis_ar: float = 0.95
    basis_sd: float = 0.0004  # stationary sd of the spot-perp log basis
    intrabar_steps: int = 12
    max_bar_return: float = 0.5
    alpha: float = 0.0  # strength of the planted effect (module docstring): 0 = none
    alpha_span_bars: int = 12  # EMA span of the peers' shocks the planted effect follows


@dataclass
class SimBatch:
    """Generated bars. `bars[i]` is symbol i's (n, 6) array [open_time_ms, open, high, low,
    close, volume]; `ohlcv[symbol]` the same view by name. `funding[symbol]` (perpetuals only)
    has rows [funding_time_ms, rate]. `regime` (n,) and `jumps` (n, n_symbols) are what the
    simulator did (hidden from a trader; for tests and drift studies)."""

    symbols: tuple[str, ...]
    open_time_ms: np.ndarray
    bars: np.ndarray
    funding: dict[str, np.ndarray]
    regime: np.ndarray
    jumps: np.ndarray

    @property
    def ohlcv(self) -> dict[str, np.ndarray]:
        return {s: self.bars[i] for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.open_time_ms)


@dataclass
class _Injection:
    at_bar: int
    regime: int
    vol_multiplier: float
    drift_per_day: float
    duration_bars: int | None

    def to_dict(self) -> dict:
        return {"at_bar": self.at_bar, "regime": self.regime, "vol_multiplier": self.vol_multiplier,
                "drift_per_day": self.drift_per_day, "duration_bars": self.duration_bars}


@dataclass
class _State:
    next_bar: int
    logp: np.ndarray  # latent log price, primaries
    h: np.ndarray  # GARCH variance multiple, primaries
    z2: np.ndarray  # last squared innovation, primaries
    anchor: np.ndarray  # EMA of log price (mean-reversion anchor), primaries
    trend_ema: np.ndarray  # EMA of 1-bar log returns (funding lean), primaries
    trend_drift: np.ndarray  # per-bar drift while trending, primaries
    vol_u: np.ndarray  # persistent log-volume component, all symbols
    basis: np.ndarray  # spot-perp log basis, tracked symbols
    diffusion: np.ndarray | None = None  # EMA of the peers' idiosyncratic shocks (planted effect)
    regime: int = MEAN_REVERTING
    forced_until: int | None = None  # regime held by an injection until this bar (-1: for ever)
    injected_vol: float = 1.0
    injected_drift_per_bar: float = 0.0
    injected_until: int | None = None  # when injected vol/drift end (None: never)
    schedule: list[_Injection] = field(default_factory=list)


def _decimals(step: float) -> int:
    """Decimal places of a tick or lot size (0.25 -> 2, 1e-7 -> 7)."""
    for d in range(16):
        if abs(round(step, d) - step) <= step * 1e-9:
            return d
    raise ValueError(f"step {step!r} has more than 15 decimals")


def _unit_t(rng: np.random.Generator, df: float, size) -> np.ndarray:
    return rng.standard_t(df, size=size) * math.sqrt((df - 2.0) / df)


class MarketSimulator:
    """Generates 5m bars for the configured assets; see the module docstring for the model."""

    def __init__(self, config: SimConfig, seed: int):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if config.start_time_ms % BAR_MS:
            raise ValueError(f"start_time_ms {config.start_time_ms} is not aligned to 5m")
        if config.t_df <= 4:
            raise ValueError("t_df must be > 4 (kurtosis of the innovations must be finite)")
        if not (math.isfinite(config.alpha) and 0.0 <= config.alpha <= 1.0):
            raise ValueError(f"alpha (SIM_ALPHA) must be a number from 0 to 1, got {config.alpha!r}")
        if config.alpha_span_bars < 1:
            raise ValueError(f"alpha_span_bars must be >= 1, got {config.alpha_span_bars}")
        self.config = config
        self.seed = int(seed)
        assets = config.assets
        self.symbols: tuple[str, ...] = tuple(a.symbol for a in assets)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("duplicate symbols in the simulator config")
        index = {s: i for i, s in enumerate(self.symbols)}
        self._primary = np.array([i for i, a in enumerate(assets) if a.tracks is None], dtype=np.intp)
        self._tracked = np.array([i for i, a in enumerate(assets) if a.tracks is not None], dtype=np.intp)
        prim_pos = {int(i): k for k, i in enumerate(self._primary)}
        for a in assets:
            if a.tracks is not None and (a.tracks not in index or assets[index[a.tracks]].tracks is not None):
                raise ValueError(f"{a.symbol} tracks {a.tracks!r}, which is not a simulated primary symbol")
            if a.tracks is not None and a.perpetual:
                raise ValueError(f"{a.symbol}: only spot symbols can track another symbol")
            if not (a.market_r2 >= 0 and a.sector_r2 >= 0 and a.market_r2 + a.sector_r2 < 1):
                raise ValueError(f"{a.symbol}: need market_r2, sector_r2 >= 0 with a sum below 1")
            if a.start_price <= 0 or a.tick_size <= 0 or a.lot_size <= 0:
                raise ValueError(f"{a.symbol}: start price, tick and lot must be positive")
        # tracked symbol k follows primary position _track_src[k]
        self._track_src = np.array([prim_pos[index[assets[i].tracks]] for i in self._tracked], dtype=np.intp)
        # for every symbol, the primary position whose latent path drives it
        self._driver = np.array([prim_pos[int(i)] if a.tracks is None else prim_pos[index[a.tracks]]
                                 for i, a in enumerate(assets)], dtype=np.intp)

        prim = [assets[i] for i in self._primary]
        self.sectors: tuple[str, ...] = tuple(dict.fromkeys(a.sector for a in prim))
        self._sector_of = np.array([self.sectors.index(a.sector) for a in prim], dtype=np.intp)
        self._w_m = np.sqrt([a.market_r2 for a in prim])
        self._w_s = np.sqrt([a.sector_r2 for a in prim])
        self._w_e = np.sqrt([1.0 - a.market_r2 - a.sector_r2 for a in prim])
        # The planted signal's weights on the idiosyncratic shocks: row i is the mean of i's
        # sector peers' shocks (scaled to unit variance) less i's own, over sqrt(2) so the
        # difference has unit variance too; a symbol without peers gets a zero row.
        signal = np.zeros((len(prim), len(prim)))
        for i, si in enumerate(self._sector_of):
            mates = [j for j, sj in enumerate(self._sector_of) if sj == si and j != i]
            if mates:
                signal[i, mates] = 1.0 / math.sqrt(len(mates))
                signal[i, i] = -1.0
        self._planted_weights = signal / math.sqrt(2.0)
        lam = 2.0 / (config.alpha_span_bars + 1.0)
        self._diffusion_lambda = lam
        # an EMA with weight lam of unit-variance shocks has variance lam / (2 - lam)
        self._diffusion_scale = 1.0 / math.sqrt(lam / (2.0 - lam))
        # market sensitivity relative to the average symbol: scales market jumps and trend drift
        self._beta = self._w_m / self._w_m.mean() if self._w_m.mean() > 0 else np.ones_like(self._w_m)
        daily_vol = np.array([a.daily_vol for a in prim])
        self._daily_vol = daily_vol
        self._logp0 = np.log([a.start_price for a in prim])

        # regime chain: per-bar transition matrix, and vol multipliers normalized so that the
        # long-run variance of the diffusion matches daily_vol
        dur = np.asarray(config.regime_duration_bars, dtype=float)
        split = np.asarray(config.regime_exit_split, dtype=float)
        trans = split / split.sum(axis=1, keepdims=True) / dur[:, None]
        trans[np.diag_indices(3)] = 1.0 - 1.0 / dur
        self._regime_cum = np.cumsum(trans, axis=1).tolist()
        evals, evecs = np.linalg.eig(trans.T)
        pi = np.real(evecs[:, np.argmin(np.abs(evals - 1.0))])
        self.regime_stationary = pi / pi.sum()
        rv = np.asarray(config.regime_vol, dtype=float)
        self._regime_vol = (rv / math.sqrt(float(self.regime_stationary @ rv**2))).tolist()
        self._regime_volume = list(config.regime_volume)

        season_volume = HOURLY_VOLUME_PROFILE / HOURLY_VOLUME_PROFILE.mean()
        season_sd = np.sqrt(season_volume)
        self._season_volume = season_volume
        self._season_sd = season_sd / math.sqrt(float(np.mean(season_sd**2)))
        self._sd_base = daily_vol / math.sqrt(BARS_PER_DAY)
        per_bar = 1.0 / BARS_PER_DAY
        self._p_jump = config.jumps_per_day * per_bar
        self._p_mjump = config.market_jumps_per_day * per_bar
        self._jump_sd = config.jump_sd_daily_vol * daily_vol
        self._kappa_lr = math.log(2.0) / (config.long_run_half_life_days * BARS_PER_DAY)
        self._anchor_lambda = 2.0 / (config.anchor_span_bars + 1.0)
        self._trend_lambda = 2.0 / (FUNDING_INTERVAL_MS // BAR_MS + 1.0)
        self._perp_pos = np.array([k for k, a in enumerate(prim) if a.perpetual], dtype=np.intp)
        self._perp_symbols = tuple(a.symbol for a in prim if a.perpetual)

        all_assets = assets
        self._tick = np.array([a.tick_size for a in all_assets])
        self._tick_decimals = [_decimals(a.tick_size) for a in all_assets]
        self._lot = np.array([a.lot_size for a in all_assets])
        self._lot_decimals = [_decimals(a.lot_size) for a in all_assets]
        self._bar_quote_volume = np.array([a.daily_quote_volume for a in all_assets]) / BARS_PER_DAY

        n_p, n_all, n_t = len(self._primary), len(assets), len(self._tracked)
        self._state = _State(
            next_bar=0, logp=self._logp0.copy(), h=np.ones(n_p), z2=np.ones(n_p), anchor=self._logp0.copy(),
            trend_ema=np.zeros(n_p), trend_drift=np.zeros(n_p), vol_u=np.zeros(n_all), basis=np.zeros(n_t),
            diffusion=np.zeros(n_p),
        )
        self._block_cache: tuple[int, dict[str, np.ndarray]] | None = None

    # --- time -----------------------------------------------------------------------------

    @property
    def next_bar(self) -> int:
        return self._state.next_bar

    @property
    def next_open_time_ms(self) -> int:
        """Open time of the next bar generate() will return."""
        return self.config.start_time_ms + self._state.next_bar * BAR_MS

    @property
    def regime(self) -> str:
        return REGIMES[self._state.regime]

    # --- regime injection -------------------------------------------------------------------

    def inject_regime_switch(self, at_open_time_ms: int, regime: str, *, vol_multiplier: float = 1.0,
                             drift: float = 0.0, duration_bars: int | None = None) -> None:
        """Schedule a structural break at the bar opening at `at_open_time_ms`: the hidden
        regime is forced to `regime`, every symbol's volatility is multiplied by
        `vol_multiplier` and `drift` (log return per day, e.g. -0.05) is added to every symbol.
        It lasts `duration_bars` bars (None: for ever), after which the Markov chain resumes."""
        if regime not in REGIMES:
            raise ValueError(f"unknown regime {regime!r}; one of {', '.join(REGIMES)}")
        if at_open_time_ms % BAR_MS:
            raise ValueError(f"at_open_time_ms {at_open_time_ms} is not aligned to 5m")
        at_bar = (at_open_time_ms - self.config.start_time_ms) // BAR_MS
        if at_bar < self._state.next_bar:
            raise ValueError(f"cannot inject at {at_open_time_ms}: bars up to {self.next_open_time_ms} "
                             "are already generated")
        if vol_multiplier <= 0:
            raise ValueError("vol_multiplier must be positive")
        if duration_bars is not None and duration_bars < 1:
            raise ValueError("duration_bars must be >= 1 (or None for a permanent switch)")
        inj = _Injection(int(at_bar), REGIMES.index(regime), float(vol_multiplier), float(drift),
                         None if duration_bars is None else int(duration_bars))
        self._state.schedule = sorted([*self._state.schedule, inj], key=lambda x: x.at_bar)

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue the same path elsewhere, as JSON-able values (floats
        survive json exactly: repr round-trips)."""
        s = self._state
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "start_time_ms": self.config.start_time_ms,
            "alpha": self.config.alpha,
            "symbols": list(self.symbols),
            "next_bar": s.next_bar,
            "logp": s.logp.tolist(),
            "h": s.h.tolist(),
            "z2": s.z2.tolist(),
            "anchor": s.anchor.tolist(),
            "trend_ema": s.trend_ema.tolist(),
            "trend_drift": s.trend_drift.tolist(),
            "vol_u": s.vol_u.tolist(),
            "basis": s.basis.tolist(),
            "diffusion": s.diffusion.tolist(),
            "regime": s.regime,
            "forced_until": s.forced_until,
            "injected_vol": s.injected_vol,
            "injected_drift_per_bar": s.injected_drift_per_bar,
            "injected_until": s.injected_until,
            "schedule": [i.to_dict() for i in s.schedule],
        }

    @classmethod
    def from_state(cls, config: SimConfig, state: dict) -> MarketSimulator:
        if state.get("version") not in (1, STATE_VERSION):
            raise ValueError(f"simulator state version {state.get('version')!r} is not 1 or {STATE_VERSION}")
        if list(state["symbols"]) != [a.symbol for a in config.assets]:
            raise ValueError("simulator state was saved for a different universe; reseed (seed_market --force)")
        if int(state["start_time_ms"]) != config.start_time_ms:
            raise ValueError(f"simulator state starts at {state['start_time_ms']}, config at {config.start_time_ms}")
        if float(state.get("alpha", 0.0)) != config.alpha:
            raise ValueError(f"simulator state was generated with alpha {state.get('alpha', 0.0)}, config has "
                             f"{config.alpha}: one market keeps its planted strength (reseed to change it)")
        sim = cls(config, int(state["seed"]))
        arr = {k: np.asarray(state[k], dtype=float) for k in
               ("logp", "h", "z2", "anchor", "trend_ema", "trend_drift", "vol_u", "basis")}
        sim._state = _State(
            next_bar=int(state["next_bar"]), regime=int(state["regime"]),
            forced_until=state["forced_until"], injected_vol=float(state["injected_vol"]),
            injected_drift_per_bar=float(state["injected_drift_per_bar"]), injected_until=state["injected_until"],
            schedule=[_Injection(**d) for d in state["schedule"]],
            diffusion=np.asarray(state.get("diffusion") or np.zeros(len(arr["logp"])), dtype=float), **arr,
        )
        return sim

    # --- generation -------------------------------------------------------------------------

    def generate(self, n_bars: int) -> SimBatch:
        """The next n_bars bars for every symbol (and the funding events among them)."""
        if n_bars < 0:
            raise ValueError("n_bars must be >= 0")
        n_all = len(self.symbols)
        first = self._state.next_bar
        bars = np.empty((n_all, n_bars, 6))
        regime = np.empty(n_bars, dtype=np.int8)
        jumps = np.zeros((n_bars, n_all), dtype=bool)
        funding: dict[str, list[np.ndarray]] = {s: [] for s in self._perp_symbols}
        pos = 0
        while pos < n_bars:
            bar = first + pos
            block, off = divmod(bar, BLOCK_BARS)
            length = min(BLOCK_BARS - off, n_bars - pos)
            draws = self._draws(block)
            self._segment(draws, off, length, bars[:, pos:pos + length], regime[pos:pos + length],
                          jumps[pos:pos + length], funding)
            pos += length
        times = self.config.start_time_ms + (first + np.arange(n_bars, dtype=np.int64)) * BAR_MS
        fund = {s: (np.vstack(v) if v else np.empty((0, 2))) for s, v in funding.items()}
        return SimBatch(self.symbols, times, bars, fund, regime, jumps)

    def _draws(self, block: int) -> dict[str, np.ndarray]:
        """All random numbers of one block, always drawn in the same order and shapes."""
        if self._block_cache is not None and self._block_cache[0] == block:
            return self._block_cache[1]
        cfg = self.config
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, block])))
        n_p, n_all, n_t, n_sec = len(self._primary), len(self.symbols), len(self._tracked), len(self.sectors)
        b = BLOCK_BARS
        d = {
            "f_m": _unit_t(rng, cfg.t_df, b),
            "f_s": _unit_t(rng, cfg.t_df, (b, n_sec)),
            "e": _unit_t(rng, cfg.t_df, (b, n_p)),
            "u_regime": rng.random(b),
            "u_dir": rng.random(b),
            "n_dir": rng.standard_normal((b, n_sec)),
            "u_jump": rng.random((b, n_p)),
            "jump": np.abs(rng.standard_normal((b, n_p))),
            "jump_down": rng.random((b, n_p)),
            "u_mjump": rng.random(b),
            "mjump": np.abs(rng.standard_normal(b)),
            "mjump_down": rng.random(b),
            "vol_eta": rng.standard_normal((b, n_all)),
            "basis_eta": rng.standard_normal((b, n_t)),
            "fund_eta": rng.standard_normal((b, n_p)),
            "bridge": rng.standard_normal((b, n_all, cfg.intrabar_steps)),
        }
        self._block_cache = (block, d)
        return d

    def _segment(self, d: dict[str, np.ndarray], off: int, n: int, out: np.ndarray, regime_out: np.ndarray,
                 jumps_out: np.ndarray, funding: dict[str, list[np.ndarray]]) -> None:
        cfg, s = self.config, self._state
        sl = slice(off, off + n)
        bar0 = s.next_bar
        times = self.config.start_time_ms + (bar0 + np.arange(n, dtype=np.int64)) * BAR_MS
        hours = (times // HOUR_MS) % 24
        season = self._season_sd[hours]

        # --- vectorized inputs of the recursion ---
        z = (self._w_m * d["f_m"][sl, None] + self._w_s * d["f_s"][sl][:, self._sector_of]
             + self._w_e * d["e"][sl])
        z2_all = z * z
        sign = np.where(d["jump_down"][sl] < cfg.jump_down_prob, -1.0, 1.0)
        idio = sign * d["jump"][sl] * self._jump_sd
        msign = np.where(d["mjump_down"][sl] < cfg.jump_down_prob, -1.0, 1.0)
        mkt = (msign * d["mjump"][sl])[:, None] * self._jump_sd * self._beta
        hv = cfg.high_vol_jump_multiplier
        u_j, u_mj = d["u_jump"][sl], d["u_mjump"][sl, None]
        jump_normal = np.where(u_j < self._p_jump, idio, 0.0) + np.where(u_mj < self._p_mjump, mkt, 0.0)
        jump_high = np.where(u_j < self._p_jump * hv, idio, 0.0) + np.where(u_mj < self._p_mjump * hv, mkt, 0.0)
        u_regime, u_dir, n_dir = d["u_regime"][sl], d["u_dir"][sl], d["n_dir"][sl]
        # Funding is fixed at each 8-hour boundary T from the bars closed by T, so it is known
        # (and emitted) with the bar that closes at T: the paper exchange settles it with that bar.
        funding_at_close = ((times + BAR_MS) % FUNDING_INTERVAL_MS) == 0
        fund_eta = d["fund_eta"][sl]
        vol_eta = d["vol_eta"][sl] * (cfg.volume_log_sd * math.sqrt(1.0 - cfg.volume_ar**2))
        basis_eta = d["basis_eta"][sl] * (cfg.basis_sd * math.sqrt(1.0 - cfg.basis_ar**2))
        injections = {i.at_bar: i for i in s.schedule if bar0 <= i.at_bar < bar0 + n}

        # --- the sequential part: one small vector step per bar ---
        n_p = len(self._primary)
        logp_out = np.empty((n, n_p))
        sd_out = np.empty((n, n_p))  # conditional sd of the diffusion, incl. season
        vol_u_out = np.empty((n, len(self.symbols)))
        basis_out = np.empty((n, len(self._tracked)))
        omega = 1.0 - cfg.garch_alpha - cfg.garch_beta
        alpha, beta, cap = cfg.garch_alpha, cfg.garch_beta, cfg.max_variance_ratio
        kappa_mr, kappa_lr = cfg.mean_reversion_per_bar, self._kappa_lr
        lam_a, lam_t = self._anchor_lambda, self._trend_lambda
        logp0, sd_base = self._logp0, self._sd_base
        trend_scale = cfg.trend_strength * self._daily_vol / BARS_PER_DAY
        bars_per_funding = FUNDING_INTERVAL_MS // BAR_MS
        logp, h, z2, anchor = s.logp, s.h, s.z2, s.anchor
        trend_ema, vol_u, basis = s.trend_ema, s.vol_u, s.basis
        diffusion, planted = s.diffusion, cfg.alpha * self._diffusion_scale
        lam_d = self._diffusion_lambda
        peer_shock = d["e"][sl] @ self._planted_weights.T if planted else None  # (n, n_p)
        regime_cum, regime_vol = self._regime_cum, self._regime_vol
        for t in range(n):
            bar = bar0 + t
            if s.forced_until is not None and s.forced_until != -1 and bar >= s.forced_until:
                s.forced_until = None
            if s.injected_until is not None and bar >= s.injected_until:
                s.injected_vol, s.injected_drift_per_bar, s.injected_until = 1.0, 0.0, None
            inj = injections.get(bar)
            new_regime = s.regime
            if inj is not None:
                new_regime = inj.regime
                s.forced_until = -1 if inj.duration_bars is None else bar + inj.duration_bars
                s.injected_vol = inj.vol_multiplier
                s.injected_drift_per_bar = inj.drift_per_day / BARS_PER_DAY
                s.injected_until = None if inj.duration_bars is None else bar + inj.duration_bars
                s.schedule = [i for i in s.schedule if i is not inj]
            elif s.forced_until is None:
                u, cum = u_regime[t], regime_cum[s.regime]
                new_regime = 0 if u < cum[0] else (1 if u < cum[1] else 2)
            if new_regime == TRENDING and (s.regime != TRENDING or inj is not None):
                direction = 1.0 if u_dir[t] < 0.5 else -1.0
                s.trend_drift = trend_scale * (direction * self._beta + 0.5 * n_dir[t][self._sector_of])
            s.regime = new_regime

            h = omega + (alpha * z2 + beta) * h
            np.minimum(h, cap, out=h)
            act = regime_vol[s.regime] * s.injected_vol
            sd = (sd_base * (season[t] * act)) * np.sqrt(h)
            ret = sd * z[t] + (s.injected_drift_per_bar - kappa_lr * (logp - logp0))
            if planted:  # the planted lead-lag: peers' shocks of closed bars only (diffusion is up to t-1)
                ret += planted * sd * diffusion
                diffusion = diffusion + lam_d * (peer_shock[t] - diffusion)
            if s.regime == TRENDING:
                ret += s.trend_drift
            elif s.regime == MEAN_REVERTING:
                ret -= kappa_mr * (logp - anchor)
            jump = jump_high[t] if s.regime == HIGH_VOL else jump_normal[t]
            ret += jump if s.injected_vol == 1.0 else jump * s.injected_vol
            np.clip(ret, -cfg.max_bar_return, cfg.max_bar_return, out=ret)
            logp = logp + ret
            anchor = anchor + lam_a * (logp - anchor)
            trend_ema = trend_ema + lam_t * (ret - trend_ema)
            if funding_at_close[t]:
                # uses bars closed by the funding time only (this one included)
                rate = (cfg.funding_base + cfg.funding_trend_coef * bars_per_funding * trend_ema[self._perp_pos]
                        + cfg.funding_noise_sd * fund_eta[t, self._perp_pos])
                rate = np.round(np.clip(rate, -cfg.funding_cap, cfg.funding_cap), 8)
                for k, sym in enumerate(self._perp_symbols):
                    funding[sym].append(np.array([[float(times[t] + BAR_MS), rate[k]]]))
            z2 = z2_all[t]
            vol_u = cfg.volume_ar * vol_u + vol_eta[t]
            basis = cfg.basis_ar * basis + basis_eta[t]
            logp_out[t] = logp
            sd_out[t] = sd
            vol_u_out[t] = vol_u
            basis_out[t] = basis
            regime_out[t] = s.regime
        prev_logp = s.logp
        prev_basis = s.basis
        s.logp, s.h, s.z2, s.anchor, s.trend_ema, s.vol_u, s.basis = logp, h, z2, anchor, trend_ema, vol_u, basis
        s.diffusion = diffusion
        s.next_bar = bar0 + n

        # --- vectorized output: every symbol's latent path, OHLC from intrabar bridges, volume ---
        is_high = regime_out[:, None] == HIGH_VOL
        jump_used = np.where(is_high, jump_high, jump_normal)
        drv = self._driver
        jumps_out[:] = jump_used[:, drv] != 0.0
        close_log = logp_out[:, drv]
        open_log = np.vstack([prev_logp[None, drv], close_log[:-1]])
        if len(self._tracked):
            close_log[:, self._tracked] += basis_out
            prev_tr = prev_logp[self._track_src] + prev_basis
            open_log[0, self._tracked] = prev_tr
            open_log[1:, self._tracked] = close_log[:-1, self._tracked]
        sd_all = sd_out[:, drv]
        k = cfg.intrabar_steps
        w = np.cumsum(d["bridge"][sl], axis=2)  # (n, n_all, k): a random walk inside each bar
        frac = np.arange(1, k) / k
        # Brownian bridge at the k-1 interior points, pinned to 0 at open and close
        bridge = (w[:, :, :-1] - frac * w[:, :, -1:]) * (sd_all[:, :, None] / math.sqrt(k))
        path = open_log[:, :, None] + frac * (close_log - open_log)[:, :, None] + bridge
        high_log = np.maximum(np.maximum(open_log, close_log), path.max(axis=2))
        low_log = np.minimum(np.minimum(open_log, close_log), path.min(axis=2))

        z_eff = np.abs(z[:, drv] + jump_used[:, drv] / sd_all)
        kz = cfg.volume_abs_return_coef
        shock = np.minimum((1.0 + kz * z_eff) / (1.0 + kz * math.sqrt(2.0 / math.pi)), 20.0)
        activity = (sd_all / (sd_base[drv] * season[:, None])) ** cfg.volume_vol_elasticity
        regime_volume = np.asarray(self._regime_volume)[regime_out][:, None]
        quote = (self._bar_quote_volume * self._season_volume[hours][:, None] * activity * shock * regime_volume
                 * np.exp(vol_u_out - 0.5 * cfg.volume_log_sd**2))

        tick = self._tick
        o = np.maximum(np.rint(np.exp(open_log) / tick) * tick, tick)
        c = np.maximum(np.rint(np.exp(close_log) / tick) * tick, tick)
        hi = np.maximum(np.ceil(np.exp(high_log) / tick - 1e-9) * tick, np.maximum(o, c))
        lo = np.maximum(np.minimum(np.floor(np.exp(low_log) / tick + 1e-9) * tick, np.minimum(o, c)), tick)
        vol = np.floor(quote / c / self._lot + 1e-9) * self._lot
        for i in range(len(self.symbols)):
            dec, ldec = self._tick_decimals[i], self._lot_decimals[i]
            col = out[i]
            col[:, 0] = times
            col[:, 1] = np.round(o[:, i], dec)
            col[:, 2] = np.round(hi[:, i], dec)
            col[:, 3] = np.round(lo[:, i], dec)
            col[:, 4] = np.round(c[:, i], dec)
            col[:, 5] = np.round(vol[:, i], ldec)
