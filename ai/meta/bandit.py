"""The meta-strategy agent: a contextual bandit choosing a trading profile per (regime, group).

Why a contextual bandit, and not a stable-baselines3 policy (PPO):
- The action (which profile trades this symbol now) does not change the market state the next
  decision sees: our orders do not move the regime. With no state transition to credit, the
  problem is a contextual bandit; PPO's value function and discounting would only add variance.
- Rewards are sparse and late: one per closed position, a handful per context per day. A PPO run
  needs far more samples than that; Thompson sampling on a few arms per context learns from tens.
- Interpretability: the state is a table of (context, profile) -> count, mean and spread of
  rewards, readable in the admin and the API; every choice carries the numbers behind it.

Algorithm: Gaussian Thompson sampling per (context, profile). Each arm keeps Welford statistics of
its clipped rewards (n, mean, sum of squared deviations); its posterior for the mean reward is
Normal(n * mean / (n + 1), s^2 / (n + 1)) with s^2 = (prior_sd^2 + M2) / (n + 1): one pseudo-
observation at 0 with spread `prior_sd` (shrinks a young arm toward "no edge"). A profile that does
not trade earns exactly 0 (no position, no cost): its value is known, it needs no observations.

Two ways to choose:
- `choose(context)` (live, greedy and cautious): the arm with the best posterior mean among the
  arms it trusts (>= `min_pulls` rewards in that context, or not trading), but only when the
  posterior probability that it beats the default profile is at least `confidence`. Otherwise it
  is *unsure* and returns DEFAULT_PROFILE with fallback=True and the reason. It is *untrained* in a
  context while the default profile has fewer than `min_pulls` rewards there (no baseline to beat):
  DEFAULT_PROFILE, fallback=True.
- `choose(context, explore=True)` (training, `train_offline`): an arm with fewer than `min_pulls`
  rewards first (the least tried), then a Thompson draw from every arm's posterior.

Rewards are the closed position's net return as a fraction of its entry notional, clipped to
[-reward_clip, reward_clip] so that one outlier (a gap, a liquidation) does not own an arm.

Regimes (`regime_of`, causal: only the closes it is given):
- volatile:   the standard deviation of the last REGIME_WINDOW log returns exceeds VOLATILE_RATIO
              times that of the up to BASELINE_WINDOW returns before them;
- trend_up / trend_down: otherwise, when the last REGIME_WINDOW bars' log return, in units of its
              own volatility (sum / (sd * sqrt(n))), is above TREND_Z / below -TREND_Z;
- range:      everything else (flat prices included).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ai.meta.profiles import DEFAULT_PROFILE, PROFILES, Profile

REGIMES = ("trend_up", "trend_down", "range", "volatile")
REGIME_WINDOW = 48  # four hours of 5m bars
BASELINE_WINDOW = 192
MIN_CLOSES = REGIME_WINDOW + 1
VOLATILE_RATIO = 1.5
# |z| above 1.5 happens ~13 % of the time on a driftless random walk: a trend call needs more
# than noise.
TREND_Z = 1.5
OTHER_GROUP = "other"
STATE_VERSION = 1


def regime_of(closes: np.ndarray) -> str:
    """The regime at the last of `closes` (oldest first), from those closes only."""
    c = np.asarray(closes, dtype=float)
    if c.ndim != 1:
        raise ValueError(f"closes must be one-dimensional, got shape {c.shape}")
    if len(c) < MIN_CLOSES:
        raise ValueError(f"closes: need at least {MIN_CLOSES} to tell the regime, got {len(c)}")
    c = c[-(BASELINE_WINDOW + REGIME_WINDOW + 1):]
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("closes must be finite and positive")
    lr = np.diff(np.log(c))
    recent, before = lr[-REGIME_WINDOW:], lr[:-REGIME_WINDOW]
    sd = float(np.std(recent))
    if len(before) >= REGIME_WINDOW:
        base = float(np.std(before))
        if sd > VOLATILE_RATIO * base and sd > 0:
            return "volatile"
    if sd <= 0:
        return "range"
    z = float(np.sum(recent)) / (sd * math.sqrt(len(recent)))
    if z > TREND_Z:
        return "trend_up"
    if z < -TREND_Z:
        return "trend_down"
    return "range"


@dataclass(frozen=True)
class Context:
    regime: str
    group: str  # the symbol's sector; "" means none and is kept as "other"

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}: known regimes are {', '.join(REGIMES)}")
        if not isinstance(self.group, str):
            raise ValueError(f"group must be a string (the symbol's sector), got {self.group!r}")
        group = self.group.strip() or OTHER_GROUP
        if "|" in group:
            raise ValueError(f"group {group!r} must not contain '|'")
        object.__setattr__(self, "group", group)

    @property
    def key(self) -> str:
        return f"{self.regime}|{self.group}"

    @classmethod
    def from_key(cls, key: str) -> Context:
        regime, sep, group = str(key).partition("|")
        if not sep:
            raise ValueError(f"context key {key!r} is not 'regime|group'")
        return cls(regime, group)


@dataclass(frozen=True)
class Choice:
    profile: Profile
    fallback: bool
    reason: str


@dataclass(frozen=True)
class ArmStats:
    n: int
    mean: float
    m2: float

    @property
    def sd(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _finite_number(name: str, value, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


class ContextualBandit:
    def __init__(self, profiles: Iterable[Profile] = PROFILES, *, min_pulls: int = 20, confidence: float = 0.9,
                 reward_clip: float = 0.2, prior_sd: float = 0.02, seed: int = 0,
                 default: Profile = DEFAULT_PROFILE):
        self.profiles: tuple[Profile, ...] = tuple(profiles)
        if not self.profiles or not all(isinstance(p, Profile) for p in self.profiles):
            raise ValueError("profiles must be a non-empty sequence of Profile")
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"profile names must be unique, got {names}")
        if default not in self.profiles:
            raise ValueError(f"the default profile {default.name!r} must be one of the profiles")
        if not default.trade:
            raise ValueError("the default profile must trade (it is today's behaviour)")
        if isinstance(min_pulls, bool) or not isinstance(min_pulls, int) or min_pulls < 1:
            raise ValueError(f"min_pulls must be an integer >= 1, got {min_pulls!r}")
        self.confidence = _finite_number("confidence", confidence)
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
        self.reward_clip = _finite_number("reward_clip", reward_clip, positive=True)
        self.prior_sd = _finite_number("prior_sd", prior_sd, positive=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.min_pulls, self.seed, self.default = min_pulls, seed, default
        self._by_name = {p.name: p for p in self.profiles}
        # {context key: {profile name: [n, mean, m2]}}
        self._stats: dict[str, dict[str, list]] = {}
        self._rng = np.random.default_rng(seed)

    # --- reading ---------------------------------------------------------------------------

    def profile(self, name: str) -> Profile:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown profile {name!r}: this agent's profiles are "
                             f"{', '.join(self._by_name)}") from None

    def stats(self, context: Context, profile_name: str) -> ArmStats:
        self.profile(profile_name)
        n, mean, m2 = self._stats.get(context.key, {}).get(profile_name, (0, 0.0, 0.0))
        return ArmStats(int(n), float(mean), float(m2))

    @property
    def total_rewards(self) -> int:
        return sum(int(s[0]) for arms in self._stats.values() for s in arms.values())

    def posterior(self, context: Context, profile_name: str) -> tuple[float, float]:
        """(mean, standard deviation) of the posterior of the profile's mean reward in `context`."""
        if not self.profile(profile_name).trade:
            return 0.0, 0.0
        s = self.stats(context, profile_name)
        var = (self.prior_sd ** 2 + s.m2) / (s.n + 1)
        return s.n * s.mean / (s.n + 1), math.sqrt(var / (s.n + 1))

    def _trusted(self, context: Context, p: Profile) -> bool:
        return not p.trade or self.stats(context, p.name).n >= self.min_pulls

    # --- choosing --------------------------------------------------------------------------

    def choose(self, context: Context, *, explore: bool = False) -> Choice:
        if not isinstance(context, Context):
            raise ValueError(f"context must be a Context, got {context!r}")
        return self._explore(context) if explore else self._exploit(context)

    def _exploit(self, context: Context) -> Choice:
        d = self.default
        n_default = self.stats(context, d.name).n
        if n_default < self.min_pulls:
            return Choice(d, True, f"untrained in {context.key}: the default profile has {n_default} of "
                                   f"{self.min_pulls} rewards needed")
        post = {p.name: self.posterior(context, p.name) for p in self.profiles if self._trusted(context, p)}
        # Ties go to the default (listed first), then to the menu's order.
        order = [d.name] + [p.name for p in self.profiles if p.name != d.name]
        best = max((name for name in order if name in post), key=lambda name: post[name][0])
        mu_d, sd_d = post[d.name]
        if best == d.name:
            return Choice(d, False, f"learned in {context.key}: default has the best mean reward "
                                    f"{mu_d:+.4f} ({n_default} rewards)")
        mu_b, sd_b = post[best]
        spread = math.hypot(sd_b, sd_d)
        p_better = _phi((mu_b - mu_d) / spread) if spread > 0 else float(mu_b > mu_d)
        n_best = self.stats(context, best).n
        numbers = (f"{best} {mu_b:+.4f} ({n_best} rewards) vs default {mu_d:+.4f} ({n_default} rewards), "
                   f"P({best} better) = {p_better:.2f}")
        if p_better < self.confidence:
            return Choice(d, True, f"unsure in {context.key}: {numbers} < {self.confidence:.2f}")
        return Choice(self._by_name[best], False, f"learned in {context.key}: {numbers}")

    def _explore(self, context: Context) -> Choice:
        young = [p for p in self.profiles if not self._trusted(context, p)]
        if young:
            fewest = min(self.stats(context, p.name).n for p in young)
            candidates = [p for p in young if self.stats(context, p.name).n == fewest]
            pick = candidates[int(self._rng.integers(len(candidates)))]
            return Choice(pick, False, f"exploring in {context.key}: {pick.name} has {fewest} of "
                                       f"{self.min_pulls} rewards")
        draws = {}
        for p in self.profiles:
            mu, sd = self.posterior(context, p.name)
            draws[p.name] = float(self._rng.normal(mu, sd)) if sd > 0 else mu
        best = max(draws, key=draws.get)
        return Choice(self._by_name[best], False, f"thompson draw in {context.key}: {best} {draws[best]:+.4f}")

    # --- learning --------------------------------------------------------------------------

    def update(self, context: Context, profile_name: str, reward: float) -> None:
        if not isinstance(context, Context):
            raise ValueError(f"context must be a Context, got {context!r}")
        p = self.profile(profile_name)
        r = _finite_number("reward", reward)
        if not p.trade and r != 0.0:
            raise ValueError(f"profile {p.name} does not trade: its reward is 0 by definition, got {r!r}")
        r = max(-self.reward_clip, min(self.reward_clip, r))
        arm = self._stats.setdefault(context.key, {}).setdefault(p.name, [0, 0.0, 0.0])
        n, mean, m2 = arm
        n += 1
        delta = r - mean
        mean += delta / n
        m2 += delta * (r - mean)
        arm[:] = [n, mean, m2]

    # --- state -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "version": STATE_VERSION, "profiles": [p.as_dict() for p in self.profiles], "default": self.default.name,
            "min_pulls": self.min_pulls, "confidence": self.confidence, "reward_clip": self.reward_clip,
            "prior_sd": self.prior_sd, "seed": self.seed,
            "stats": {key: {name: [int(n), float(mean), float(m2)] for name, (n, mean, m2) in arms.items()}
                      for key, arms in self._stats.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> ContextualBandit:
        if not isinstance(d, dict):
            raise ValueError(f"bandit state must be a dict, got {type(d).__name__}")
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"bandit state version {d.get('version')!r} is not {STATE_VERSION}")
        try:
            profiles = tuple(Profile(**p) for p in d["profiles"])
            by_name = {p.name: p for p in profiles}
            if d["default"] not in by_name:
                raise ValueError(f"the default profile {d['default']!r} is not among the state's profiles")
            stats = d["stats"]
            b = cls(profiles, min_pulls=d["min_pulls"], confidence=d["confidence"], reward_clip=d["reward_clip"],
                    prior_sd=d["prior_sd"], seed=d["seed"], default=by_name[d["default"]])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bandit state is malformed: {type(exc).__name__}: {exc}") from None
        if not isinstance(stats, dict):
            raise ValueError("bandit state: stats must be {context key: {profile: [n, mean, m2]}}")
        for key, arms in stats.items():
            ctx = Context.from_key(key)
            if not isinstance(arms, dict):
                raise ValueError(f"bandit state: stats of {key} must be {{profile: [n, mean, m2]}}")
            for name, s in arms.items():
                b.profile(name)
                if not isinstance(s, list | tuple) or len(s) != 3:
                    raise ValueError(f"bandit state: stats of {name} in {key} must be [n, mean, m2]")
                n = s[0]
                mean = _finite_number(f"stats {key} {name} mean", s[1])
                m2 = _finite_number(f"stats {key} {name} m2", s[2])
                if isinstance(n, bool) or not isinstance(n, int) or n < 0 or m2 < 0:
                    raise ValueError(f"bandit state: stats of {name} in {key} have a bad count or spread")
                b._stats.setdefault(ctx.key, {})[name] = [n, mean, m2]
        # A restored agent does not replay the draws it made before it was saved.
        b._rng = np.random.default_rng([b.seed & 0xFFFFFFFF, b.total_rewards])
        return b

    def table(self) -> list[dict]:
        """Every (context, profile) seen, with its count, mean, spread and posterior: for the API."""
        rows = []
        for key in sorted(self._stats):
            ctx = Context.from_key(key)
            for p in self.profiles:
                s = self.stats(ctx, p.name)
                if s.n == 0:
                    continue
                mu, sd = self.posterior(ctx, p.name)
                rows.append({"regime": ctx.regime, "group": ctx.group, "profile": p.name, "n": s.n,
                             "mean_reward": s.mean, "sd_reward": s.sd, "posterior_mean": mu, "posterior_sd": sd})
        return rows
