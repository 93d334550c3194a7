"""The meta-strategy as a gymnasium environment, and offline training of the bandit in it.

observation (float32 Box, shape (len(REGIMES) + 1,))
    the context: a one-hot of the regime (REGIMES' order), then the index of the symbol group in
    the environment's `groups`
action (Discrete(len(profiles)))
    the index of the profile to trade the context with
reward
    the net return (fraction of entry notional) of the position the chosen profile would have
    closed, drawn from the outcome sampler passed in; 0 for a profile that does not trade, and 0
    with info["traded"] False when the sampler says the profile would have opened nothing (its
    threshold filtered the signal out). Each step draws the next context from `contexts`
    (uniformly, or by `weights`); an episode is `episode_length` decisions (truncated, never
    terminated: no decision ends the market).

The action does not change which context comes next: that is what makes this a bandit problem
(ai/meta/bandit.py says why that decides the algorithm).

The outcome sampler is `sampler(context, profile, rng) -> float | None`. `ReplaySampler` replays
recorded outcomes (e.g. the walk-forward's closed positions per context and profile).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ai.meta.bandit import REGIMES, Context, ContextualBandit
from ai.meta.profiles import PROFILES, Profile

Sampler = Callable[[Context, Profile, np.random.Generator], "float | None"]


class ReplaySampler:
    """Draws one recorded outcome of (context, profile) at random; None when none was recorded
    (the profile never traded in that context)."""

    def __init__(self, outcomes: Mapping[tuple[str, str], Sequence[float]]):
        self.outcomes: dict[tuple[str, str], np.ndarray] = {}
        for (key, name), values in outcomes.items():
            arr = np.asarray(list(values), dtype=float)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"outcomes of {name} in {key} must be finite")
            self.outcomes[(Context.from_key(key).key, name)] = arr

    def __call__(self, context: Context, profile: Profile, rng: np.random.Generator) -> float | None:
        arr = self.outcomes.get((context.key, profile.name))
        if arr is None or not len(arr):
            return None
        return float(arr[int(rng.integers(len(arr)))])


class MetaStrategyEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, sampler: Sampler, contexts: Sequence[Context], *, profiles: Sequence[Profile] = PROFILES,
                 weights: Sequence[float] | None = None, episode_length: int = 256):
        super().__init__()
        if not callable(sampler):
            raise ValueError("sampler must be callable: sampler(context, profile, rng) -> float | None")
        self.contexts = tuple(contexts)
        if not self.contexts or not all(isinstance(c, Context) for c in self.contexts):
            raise ValueError("contexts must be a non-empty sequence of Context")
        self.profiles = tuple(profiles)
        if not self.profiles or not all(isinstance(p, Profile) for p in self.profiles):
            raise ValueError("profiles must be a non-empty sequence of Profile")
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
            raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
        if weights is None:
            self.weights = np.full(len(self.contexts), 1.0 / len(self.contexts))
        else:
            w = np.asarray(weights, dtype=float)
            if w.shape != (len(self.contexts),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError("weights must be one non-negative finite number per context, not all zero")
            self.weights = w / w.sum()
        self.sampler, self.episode_length = sampler, episode_length
        self.groups = tuple(sorted({c.group for c in self.contexts}))
        n = len(REGIMES)
        high = np.r_[np.ones(n), max(len(self.groups) - 1, 0)].astype(np.float32)
        self.observation_space = spaces.Box(low=np.zeros(n + 1, dtype=np.float32), high=high, dtype=np.float32)
        self.action_space = spaces.Discrete(len(self.profiles))
        self._context: Context | None = None
        self._t = 0

    def observe(self, context: Context) -> np.ndarray:
        obs = np.zeros(len(REGIMES) + 1, dtype=np.float32)
        obs[REGIMES.index(context.regime)] = 1.0
        try:
            obs[-1] = self.groups.index(context.group)
        except ValueError:
            raise ValueError(f"group {context.group!r} is not one of this environment's groups") from None
        return obs

    def context_of(self, obs: np.ndarray) -> Context:
        obs = np.asarray(obs)
        return Context(REGIMES[int(np.argmax(obs[:len(REGIMES)]))], self.groups[int(round(float(obs[-1])))])

    def action_of(self, profile_name: str) -> int:
        for i, p in enumerate(self.profiles):
            if p.name == profile_name:
                return i
        raise ValueError(f"unknown profile {profile_name!r}: this environment's profiles are "
                         f"{', '.join(p.name for p in self.profiles)}")

    def _draw_context(self) -> Context:
        return self.contexts[int(self.np_random.choice(len(self.contexts), p=self.weights))]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._context = self._draw_context()
        return self.observe(self._context), {"context": self._context}

    def step(self, action):
        if self._context is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not a profile index in [0, {len(self.profiles)})")
        profile = self.profiles[int(action)]
        context = self._context
        traded, reward = False, 0.0
        if profile.trade:
            outcome = self.sampler(context, profile, self.np_random)
            if outcome is not None:
                if isinstance(outcome, bool) or not isinstance(outcome, int | float) or not math.isfinite(outcome):
                    raise ValueError(f"sampler returned {outcome!r} for {profile.name} in {context.key}: "
                                     "a finite number or None expected")
                traded, reward = True, float(outcome)
        self._t += 1
        self._context = self._draw_context()
        info = {"context": self._context, "decided": context, "profile": profile.name, "traded": traded}
        return self.observe(self._context), reward, False, self._t >= self.episode_length, info


def train_offline(env: MetaStrategyEnv, bandit: ContextualBandit, steps: int, *, seed: int | None = None) -> dict:
    """Trains `bandit` by interacting with `env` for `steps` decisions (exploring: young arms
    first, then Thompson draws). A decision that opened nothing teaches nothing (no position
    closed); a profile that does not trade has a known value and is not updated."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if [p.name for p in env.profiles] != [p.name for p in bandit.profiles]:
        raise ValueError("the environment and the bandit must offer the same profiles in the same order")
    obs, info = env.reset(seed=seed)
    chosen: dict[str, int] = {}
    updates = 0
    reward_sum = 0.0
    for _ in range(steps):
        context = env.context_of(obs)
        choice = bandit.choose(context, explore=True)
        obs, reward, terminated, truncated, info = env.step(env.action_of(choice.profile.name))
        chosen[choice.profile.name] = chosen.get(choice.profile.name, 0) + 1
        reward_sum += reward
        if info["traded"]:
            bandit.update(context, choice.profile.name, reward)
            updates += 1
        if terminated or truncated:
            obs, info = env.reset()
    return {"steps": steps, "updates": updates, "chosen": chosen, "mean_reward": reward_sum / steps if steps else 0.0}
