"""The meta-strategy's gymnasium environment and offline training of the bandit in it."""
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ai.meta.bandit import REGIMES, Context, ContextualBandit
from ai.meta.env import MetaStrategyEnv, ReplaySampler, train_offline
from ai.meta.profiles import PROFILES, profile_named

CONTEXTS = [Context("trend_up", "layer1"), Context("range", "defi"), Context("volatile", "")]


def gaussian_sampler(means, sd=0.01):
    """Planted effects: rewards ~ N(means[(context key, profile)], sd), 0.002 where unnamed."""
    def sample(context, profile, rng):
        return float(rng.normal(means.get((context.key, profile.name), 0.002), sd))
    return sample


def test_passes_gymnasium_checks():
    env = MetaStrategyEnv(gaussian_sampler({}), CONTEXTS, episode_length=16)
    check_env(env, skip_render_check=True)


def test_observation_is_the_context():
    env = MetaStrategyEnv(gaussian_sampler({}), CONTEXTS)
    for ctx in CONTEXTS:
        obs = env.observe(ctx)
        assert obs.shape == (len(REGIMES) + 1,) and obs.dtype == np.float32
        assert obs[:len(REGIMES)].sum() == 1.0 and obs[REGIMES.index(ctx.regime)] == 1.0
        assert env.observation_space.contains(obs)
        assert env.context_of(obs) == ctx
    assert env.action_space.n == len(PROFILES)


def test_standing_aside_earns_zero_without_asking_the_sampler():
    asked = []

    def sampler(context, profile, rng):
        asked.append(profile.name)
        return 0.05

    env = MetaStrategyEnv(sampler, CONTEXTS)
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(env.action_of("stand_aside"))
    assert (r, info["traded"], asked) == (0.0, False, [])
    _, r, *_, info = env.step(env.action_of("default"))
    assert (r, info["traded"], asked) == (0.05, True, ["default"])


def test_a_profile_that_opened_nothing_teaches_nothing():
    env = MetaStrategyEnv(lambda c, p, rng: None if p.name == "selective" else 0.01, CONTEXTS[:1])
    b = ContextualBandit(min_pulls=2)
    out = train_offline(env, b, 40, seed=1)
    assert b.stats(CONTEXTS[0], "selective").n == 0
    assert out["updates"] == sum(n for name, n in out["chosen"].items() if name in ("default", "patient"))


def test_episodes_truncate_and_restart():
    env = MetaStrategyEnv(gaussian_sampler({}), CONTEXTS, episode_length=3)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(3)]
    assert flags == [False, False, True]
    b = ContextualBandit()
    assert train_offline(env, b, 10, seed=0)["steps"] == 10


@hsettings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), ctx_i=st.integers(0, len(CONTEXTS) - 1),
       best=st.sampled_from(["selective", "patient", "stand_aside"]))
def test_offline_training_learns_the_planted_arm_per_context(seed, ctx_i, best):
    """The planted arm wins in its context; in the others every trading profile earns the same
    small edge, so the agent keeps trading there (which one trades is a tie)."""
    target = CONTEXTS[ctx_i]
    means = {(target.key, name): -0.01 for name in ("default", "selective", "patient")}
    if best != "stand_aside":
        means[(target.key, best)] = 0.015
    env = MetaStrategyEnv(gaussian_sampler(means), CONTEXTS)
    b = ContextualBandit(min_pulls=10, seed=seed)
    train_offline(env, b, 900, seed=seed)
    c = b.choose(target)
    assert (c.profile.name, c.fallback) == (best, False)
    for other in CONTEXTS:
        if other != target:
            assert b.choose(other).profile.trade


def test_replay_sampler_replays_recorded_outcomes():
    s = ReplaySampler({("range|defi", "default"): [0.01, -0.02], ("range|", "patient"): [0.03]})
    rng = np.random.default_rng(0)
    draws = {s(Context("range", "defi"), profile_named("default"), rng) for _ in range(50)}
    assert draws == {0.01, -0.02}
    assert s(Context("range", "other"), profile_named("patient"), rng) == 0.03
    assert s(Context("range", "defi"), profile_named("selective"), rng) is None


@pytest.mark.parametrize(("build", "match"), [
    (lambda: MetaStrategyEnv(None, CONTEXTS), "sampler"),
    (lambda: MetaStrategyEnv(gaussian_sampler({}), []), "contexts"),
    (lambda: MetaStrategyEnv(gaussian_sampler({}), CONTEXTS, weights=[1, 1]), "weights"),
    (lambda: MetaStrategyEnv(gaussian_sampler({}), CONTEXTS, weights=[1, -1, 1]), "weights"),
    (lambda: MetaStrategyEnv(gaussian_sampler({}), CONTEXTS, episode_length=0), "episode_length"),
    (lambda: ReplaySampler({("sideways|defi", "default"): [0.1]}), "unknown regime"),
    (lambda: ReplaySampler({("range|defi", "default"): [float("nan")]}), "finite"),
    (lambda: MetaStrategyEnv(gaussian_sampler({}), CONTEXTS).action_of("bold"), "unknown profile"),
    (lambda: MetaStrategyEnv(gaussian_sampler({}), CONTEXTS).observe(Context("range", "meme")), "group"),
])
def test_bad_input_is_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_sampler_output_and_action_are_refused():
    env = MetaStrategyEnv(lambda c, p, rng: float("nan"), CONTEXTS)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="sampler returned"):
        env.step(0)
    with pytest.raises(ValueError, match="action"):
        env.step(len(PROFILES))


def test_train_offline_refuses_mismatched_menus_and_bad_steps():
    env = MetaStrategyEnv(gaussian_sampler({}), CONTEXTS, profiles=PROFILES[:2])
    with pytest.raises(ValueError, match="same profiles"):
        train_offline(env, ContextualBandit(), 5)
    with pytest.raises(ValueError, match="steps"):
        train_offline(MetaStrategyEnv(gaussian_sampler({}), CONTEXTS), ContextualBandit(), -1)
