"""RL sizing evaluated (ai/evaluation/sizing.py): out of sample, the same positions for both
sizers, figures that add up, a real interval. Pure, fixed seeds; one small run shared by the
tests (a few seconds of PPO)."""
import math

import numpy as np
import pytest

from ai.evaluation import sizing as se

# Small enough to run in seconds, large enough for a few hundred positions. 1024 timesteps is
# a token agent: these tests are about the comparison's machinery, not about PPO's quality.
CONFIG = se.SizingEvaluationConfig(days=20, agent_timesteps=1024, market_seed=11)


@pytest.fixture(scope="module")
def comparison():
    captured = {}
    real_train = se.train_agent

    def spy(series, probabilities, **kw):
        captured["series"] = [s.copy() for s in series]
        captured["probabilities"] = [p.copy() for p in probabilities]
        return real_train(series, probabilities, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(se, "train_agent", spy)
        c = se.compare_sizers(CONFIG)
    return c, captured


class _FixedAgent:
    """A stand-in agent: a fixed share of the allowed size; records what it was shown."""

    def __init__(self, share):
        self.share = share
        self.observations = []

    def act(self, obs):
        self.observations.append(np.asarray(obs, dtype=float))
        return self.share


# --- out of sample ----------------------------------------------------------------------------


def test_the_agent_trains_only_on_bars_before_the_evaluation_window_with_a_purge(comparison):
    c, captured = comparison
    layout = c.layout
    bar, h = CONFIG.bar_ms, CONFIG.horizon
    last_bar_seen = max(int(s[:, 0].max()) for s in captured["series"])
    first_position = int(c.positions.t_ms.min())
    # every bar the agent read (its rewards read t + horizon inside the series) ends a purge
    # of at least one horizon before the first evaluated bar
    assert last_bar_seen == layout.agent_end_ms
    assert last_bar_seen + h * bar < layout.eval_start_ms <= first_position
    # and the forecasters' training labels end before it too
    assert layout.forecaster_label_end_ms < layout.eval_start_ms
    # the agent saw the agent window's out-of-sample probabilities, not a constant
    p = np.concatenate(captured["probabilities"])
    assert p.std() > 0.01 and ((p >= 0) & (p <= 1)).all()


def test_evaluating_on_the_agents_training_data_is_refused():
    """The guard the comparison runs: an evaluation window inside the agent's data (or without
    a purge after it) raises; this is what would catch PPO graded on what it learned from."""
    base = dict(forecaster_train_end_ms=0, forecaster_label_end_ms=0, horizon_bars=12, bar_ms=300_000)
    ok = se.Layout(agent_start_ms=0, agent_end_ms=1_000 * 300_000, eval_start_ms=1_013 * 300_000,
                   eval_end_ms=2_000 * 300_000, **base)
    ok.check()
    same = se.Layout(agent_start_ms=0, agent_end_ms=2_000 * 300_000, eval_start_ms=0, eval_end_ms=2_000 * 300_000,
                     **base)
    with pytest.raises(ValueError, match="end before"):
        same.check()
    no_purge = se.Layout(agent_start_ms=0, agent_end_ms=1_000 * 300_000, eval_start_ms=1_005 * 300_000,
                         eval_end_ms=2_000 * 300_000, **base)
    with pytest.raises(ValueError, match="purge"):
        no_purge.check()
    leaky_forecaster = se.Layout(**{**ok.__dict__, "forecaster_label_end_ms": ok.eval_start_ms})
    with pytest.raises(ValueError, match="forecaster"):
        leaky_forecaster.check()


# --- the same positions, only the size differs -------------------------------------------------


def test_positions_clear_the_policy_threshold_and_carry_costs(comparison):
    c, _ = comparison
    pos = c.positions
    assert len(pos) > 200
    conf = np.maximum(pos.probability_up, 1 - pos.probability_up)
    assert (conf >= 0.6).all() and CONFIG.min_confidence == 0.6
    assert np.array_equal(pos.direction, np.where(pos.probability_up >= 0.5, 1.0, -1.0))
    # the decision grid: one decision per symbol every horizon bars (no overlapping positions)
    gaps = np.diff(np.unique(pos.t_ms)) // CONFIG.bar_ms
    assert (gaps >= CONFIG.horizon).all()
    # the outcome is the move from entry to exit horizon bars later, in the position's
    # direction, minus fee and slippage (0.1 % per side) on entry and on exit
    ohlcv, _ = se.simulate_market(CONFIG)
    for i in range(0, len(pos), 37):
        bars = ohlcv[str(pos.symbol[i])]
        row = int(np.searchsorted(bars[:, 0], pos.t_ms[i]))
        move = bars[row + CONFIG.horizon, 4] / bars[row, 4] - 1
        assert pos.outcome[i] == pytest.approx(pos.direction[i] * move - 0.002, abs=1e-12)


def test_both_sizers_size_the_same_positions_and_only_the_size_differs(comparison):
    c, _ = comparison
    half = se.run_sizer(c.positions, c.period_times, _FixedAgent(0.5), CONFIG)
    kelly = c.paths[se.KELLY]
    for path in (half, kelly, c.paths[se.PPO]):
        assert len(path["size_usd"]) == len(c.positions)
        # each PnL is this sizer's size times the shared position's outcome
        assert path["pnl_usd"] == pytest.approx(path["size_usd"] * c.positions.outcome, abs=1e-9)
    sized = (half["size_usd"] > 0) & (kelly["size_usd"] > 0)
    assert sized.sum() > 100
    assert (np.sign(half["pnl_usd"][sized]) == np.sign(kelly["pnl_usd"][sized])).all()
    # the agent at half the allowed size binds somewhere: the sizes differ, and the paired
    # difference is then not zero
    assert (half["size_usd"] < kelly["size_usd"]).any()
    assert se.compare(half, kelly)["difference_per_position"]["mean"] != 0


def test_each_sizer_sees_its_own_equity_path(comparison):
    c, _ = comparison
    idle = _FixedAgent(0.0)
    path = se.run_sizer(c.positions, c.period_times, idle, CONFIG)
    assert (path["size_usd"] == 0).all() and (path["equity"] == 1.0).all()
    obs = np.array(idle.observations)
    # an agent that never trades never has a drawdown, exposure or recent PnL to observe,
    # although Kelly-only's path over the same positions has a drawdown
    assert (obs[:, 2] == 0).all() and (obs[:, 3] == 0).all() and (obs[:, 4] == 0).all()
    assert se.figures(c.paths[se.KELLY], 1.0)["max_drawdown"] > 0


# --- figures ----------------------------------------------------------------------------------


def _kelly_equity_by_hand(c) -> np.ndarray:
    """Kelly-only rebuilt from the rules (quarter Kelly capped at a quarter, 10 % of equity
    allowed, 10,000 USD per position, down to the cent; payoff ratio from the sizer's own
    last 200 PnLs once 10 wins and 10 losses exist), without ai.sizing."""
    pos, equity, pnls, out = c.positions, CONFIG.equity_usd, [], []
    for t in c.period_times:
        m = pos.t_ms == t
        recent = pnls[-200:]
        wins, losses = [x for x in recent if x > 0], [-x for x in recent if x < 0]
        b = np.mean(wins) / np.mean(losses) if len(wins) >= 10 and len(losses) >= 10 else 1.0
        p_win = np.where(pos.direction[m] > 0, pos.probability_up[m], 1 - pos.probability_up[m])
        k = np.minimum(0.25, 0.25 * np.maximum(0.0, p_win - (1 - p_win) / b))
        size = np.floor(np.minimum.reduce([np.full(m.sum(), 0.1 * equity), k * equity,
                                           np.full(m.sum(), 10_000.0)]) * 100 + 1e-6) / 100
        pnl = size * pos.outcome[m]
        pnls.extend(pnl[size > 0].tolist())
        equity += pnl.sum()
        out.append(equity / CONFIG.equity_usd)
    return np.array(out)


def test_kelly_only_equity_recomputed_independently(comparison):
    c, _ = comparison
    assert c.paths[se.KELLY]["equity"] == pytest.approx(_kelly_equity_by_hand(c), rel=1e-6)


def test_figures_are_consistent_with_the_paths(comparison):
    c, _ = comparison
    s = se.summarize(c)
    for name in se.SIZERS:
        f, path = s["sizers"][name], c.paths[name]
        eq = np.array(f["equity"]["equity"])
        assert len(eq) == len(c.period_times) == s["positions"]["n_periods"]
        assert f["total_return"] == pytest.approx(eq[-1] - 1)
        assert f["total_return"] == pytest.approx(np.prod(1 + path["period_returns"]) - 1)
        peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))
        assert f["max_drawdown"] == pytest.approx((1 - np.concatenate([[1.0], eq]) / peak).max())
        assert f["n_positions"] == int((path["size_usd"] > 0).sum()) <= len(c.positions)
        assert f["mean_return_per_position"] == pytest.approx(path["return_on_equity"].mean())
        assert sum(f["binding_cap"].values()) == len(c.positions)
    assert s["positions"]["n_positions"] == len(c.positions) <= s["positions"]["n_signals"]
    assert "planted" in s["simulated_market"]["planted"] and s["simulated_market"]["alpha"] == 0.5


def test_the_interval_is_a_real_interval_and_the_verdict_follows_it(comparison):
    c, _ = comparison
    s = se.summarize(c)
    iv = s["difference_per_position"]
    assert iv["n"] == len(c.positions) and iv["lo"] < iv["hi"]
    assert iv["lo"] <= iv["mean"] <= iv["hi"]
    diff = c.paths[se.PPO]["return_on_equity"] - c.paths[se.KELLY]["return_on_equity"]
    assert iv["mean"] == pytest.approx(diff.mean())
    expected = se.BETTER if iv["lo"] > 0 else se.WORSE if iv["hi"] < 0 else se.INDISTINGUISHABLE
    assert s["verdict"] == expected and any(line.startswith("Verdict:") for line in s["statements"])


@pytest.mark.parametrize(("shift", "word"), [(2e-4, se.BETTER), (-2e-4, se.WORSE), (0.0, se.INDISTINGUISHABLE)])
def test_the_verdict_reads_the_paired_interval(shift, word):
    rng = np.random.default_rng(3)
    frac = np.full(600, 0.05)
    kelly = {"return_on_equity": rng.normal(1e-4, 1e-3, 600), "size_fraction": frac}
    noise = rng.normal(0.0, 1e-4, 600)
    noise -= noise.mean()  # no drift: only `shift` moves the mean
    ppo = {"return_on_equity": kelly["return_on_equity"] + shift + noise, "size_fraction": frac}
    out = se.compare(ppo, kelly)
    assert out["verdict"] == word
    assert math.isclose(out["difference_per_position"]["mean"], shift, abs_tol=1e-12)


def test_allocation_separates_shrinking_from_choosing():
    """A PPO that only scales Kelly down loses on return per position, but allocates exactly
    like Kelly; one that sizes up the winners allocates better."""
    rng = np.random.default_rng(4)
    outcome = rng.normal(5e-4, 5e-3, 800)
    kelly_frac = rng.uniform(0.03, 0.06, 800)
    kelly = {"return_on_equity": kelly_frac * outcome, "size_fraction": kelly_frac}
    half = {"return_on_equity": 0.5 * kelly_frac * outcome, "size_fraction": 0.5 * kelly_frac}
    out = se.compare(half, kelly)
    assert out["verdict"] == se.WORSE and out["difference_per_position"]["hi"] < 0
    assert out["allocation_per_position"]["kelly_scale"] == pytest.approx(0.5)
    assert out["allocation_per_position"]["mean"] == pytest.approx(0.0, abs=1e-15)
    assert out["allocation_verdict"] == se.INDISTINGUISHABLE
    seer_frac = np.where(outcome > 0, 0.04, 0.01)  # smaller on average than Kelly, but on the winners
    seer = {"return_on_equity": seer_frac * outcome, "size_fraction": seer_frac}
    assert se.compare(seer, kelly)["allocation_verdict"] == se.BETTER


def test_payoff_ratio_waits_for_ten_wins_and_ten_losses():
    assert se.payoff_ratio([1.0] * 30 + [-1.0] * 9) == 1.0
    assert se.payoff_ratio([3.0] * 10 + [-1.0] * 10) == pytest.approx(3.0)
    # only the last 200 count
    assert se.payoff_ratio([100.0] * 50 + [2.0] * 100 + [-1.0] * 100) == pytest.approx(2.0)


# --- manage.py evaluate_models -------------------------------------------------------------


@pytest.mark.django_db
def test_evaluate_models_writes_the_sizing_section_and_plot_and_no_sizing_skips_it(comparison, settings, tmp_path,
                                                                                  monkeypatch):
    """The command's wiring, with the comparison already computed by the fixture (the same
    figures the command would summarise; the run itself is what the tests above check)."""
    import json
    from io import StringIO
    from pathlib import Path

    from django.core.management import call_command

    from trading.simulator.service import seed_history

    c, _ = comparison
    seen = []

    def computed(config, progress=None):
        seen.append(config)
        return c

    monkeypatch.setattr(se, "compare_sizers", computed)
    settings.REPORTS_DIR = str(tmp_path / "reports")
    seed_history(days=3, seed=2)
    args = ["evaluate_models", "--models", "xgboost", "--folds", "2", "--sample-every", "3", "--seed", "3",
            "--no-null-control"]

    def run(*extra):
        out = StringIO()
        call_command(*args, *extra, stdout=out, stderr=StringIO())
        text = out.getvalue()
        folder = Path(text.strip().splitlines()[-1].split("report:", 1)[1].strip())
        return text, folder, json.loads((folder / "report.json").read_text())

    text, folder, doc = run("--sizing-timesteps", "1024", "--sizing-days", "20")
    assert len(seen) == 1
    cfg = seen[0]
    assert (cfg.market_seed, cfg.agent_seed, cfg.agent_timesteps, cfg.days) == (3, 3, 1024, 20)
    assert cfg.alpha == settings.SIM_ALPHA and cfg.min_confidence == 0.6
    sizing = doc["sizing"]
    assert set(sizing["sizers"]) == {"ppo", "kelly"}
    for f in sizing["sizers"].values():
        assert {"total_return", "mean_return_per_position", "sharpe", "max_drawdown", "n_positions"} <= set(f)
    iv = sizing["difference_per_position"]
    assert iv["lo"] < iv["hi"] and sizing["verdict"] in (se.BETTER, se.WORSE, se.INDISTINGUISHABLE)
    assert doc["plots"]["sizing"] == "sizing.png" and (folder / "sizing.png").stat().st_size > 5000
    assert "Verdict: PPO sizing" in text and sizing["statements"][-1] in doc["verdict"]["statements"]
    assert doc["params"]["sizing_timesteps"] == 1024

    text, folder, doc = run("--no-sizing")
    assert len(seen) == 1 and "sizing" not in doc and "sizing" not in doc["plots"]
    assert not (folder / "sizing.png").exists() and "Verdict: PPO sizing" not in text
