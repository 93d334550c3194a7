"""The orchestration ablation's harness (ai/evaluation/orchestration.py) on tiny hand-made markets:
PBA's reductions, PAL's adds and PIL's gate on them, HFOS between them, costs on every trade, the
meta-strategy's flag, the verdicts. Pure and fast; one small run of the whole ablation on the
simulator at the end."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai.evaluation import orchestration as oe
from ai.evaluation.walkforward import Costs
from ai.meta.profiles import DEFAULT_PROFILE

START = oe.START_MS  # 2026-01-01 00:00 UTC: a tiny market stays inside one UTC day
BAR = 300_000
CFG = oe.OrchestrationEvaluationConfig(meta_seeds=(0,))
PER_SIDE = CFG.costs.per_side  # 0.1 %: taker fee + slippage
CAP_WITH_BAND = 0.30 + float(CFG.caps.band_pct) / 100  # PBA acts beyond its cap plus its no-trade band


def make_market(closes: dict[str, np.ndarray], sectors: dict[str, str], p_up: dict[str, np.ndarray],
                atr: dict[str, np.ndarray] | None = None) -> oe.Market:
    symbols = tuple(closes)
    n = len(closes[symbols[0]])
    col = lambda d, s, fill: np.asarray(d[s], float) if d and s in d else np.full(n, fill)  # noqa: E731
    return oe.Market(t_ms=START + BAR * np.arange(n, dtype=np.int64), symbols=symbols,
                     sectors=tuple(sectors[s] for s in symbols),
                     close=np.column_stack([np.asarray(closes[s], float) for s in symbols]),
                     atr=np.column_stack([col(atr, s, 1.0) for s in symbols]),
                     p_up=np.column_stack([col(p_up, s, np.nan) for s in symbols]))


def book(market, parts, config=CFG, chooser=None):
    return oe.Portfolio(market, parts, config, chooser or oe.DefaultOnly())


def flat(n, price=100.0):
    return np.full(n, price)


def only_at(n, row, p):
    out = np.full(n, np.nan)
    out[row] = p
    return out


# --- PBA ------------------------------------------------------------------------------------------


def over_weight_sector(n=20):
    """Four symbols of one sector, each opened at 10,000 USD on bar 0 (P(up) 0.8: quarter Kelly
    0.15, capped at 10 % of equity and the policy's 10,000 USD): 40 % of equity in one sector."""
    names = ["A", "B", "C", "D"]
    return make_market({s: flat(n) for s in names}, {s: "layer1" for s in names},
                       {s: only_at(n, 0, 0.8) for s in names})


def test_pba_reduces_an_over_weight_sector_to_its_cap_and_each_reduction_pays_costs():
    market = over_weight_sector()
    on, off = book(market, oe.Parts(meta=False)), book(market, oe.Parts(meta=False, pba=False))
    on.step(0, 0, 12)
    off.step(0, 0, 12)
    # without PBA the risk validator lets 40 % into the sector (its own sector cap is 100 %)
    assert off.exposures(0)[0]["layer1"] == pytest.approx(40_000)
    assert off.counts["reductions"] == 0
    # with PBA each of the four gives back a quarter of the excess over 30 % of the equity left
    # after the entries' costs, at the same bar
    excess = 40_000 - 0.30 * (100_000 - PER_SIDE * 40_000)
    sector, _ = on.exposures(0)
    assert on.counts["reductions"] == 4 and on.counts["reduced_usd"] == pytest.approx(excess, abs=0.05)
    assert sector["layer1"] == pytest.approx(40_000 - excess, abs=0.05)
    # costs: 0.1 % on the 40,000 opened and on the excess reduced; prices did not move
    assert on.counts["costs_usd"] == pytest.approx(PER_SIDE * (40_000 + excess), abs=0.01)
    assert on.equity(0) == pytest.approx(100_000 - PER_SIDE * (40_000 + excess), abs=0.01)
    assert off.equity(0) == pytest.approx(100_000 - PER_SIDE * 40_000, abs=1e-6)
    # it stays there until the positions close: the costs that nudge it a hair over 30 % of
    # the equity left are inside PBA's no-trade band, so nothing more is traded
    for row in range(1, 13):
        on.step(row, 0, 12)
        if on.open:
            assert on.exposures(row)[0]["layer1"] <= CAP_WITH_BAND * on.equity(row)
    assert not on.open and len(on.closed) == 4 and on.counts["reductions"] == 4


def test_pba_leaves_a_book_within_its_caps_alone():
    n = 14
    names = ["A", "B", "C", "D"]
    market = make_market({s: flat(n) for s in names}, dict(zip(names, ["layer1", "layer2", "defi", "meme"],
                                                                strict=True)),
                         {s: only_at(n, 0, 0.8) for s in names})
    p = book(market, oe.Parts(meta=False))
    p.run(0, 0, 12)
    assert p.counts["positions"] == 4 and p.counts["reductions"] == 0


# --- PAL and PIL -------------------------------------------------------------------------------


def two_winners(n=16):
    """A and B (two sectors) open long at 100 with P(up) 0.62 (quarter Kelly 6 %: 6,000 USD) and
    stand at 106 from bar 3, with the signal still long. B's ATR triples at bar 3 (PIL: at risk,
    a volatility spike); A's does not (PIL: winner)."""
    price = np.where(np.arange(n) < 3, 100.0, 106.0)
    atr_b = np.where(np.arange(n) < 3, 1.0, 3.0)
    return make_market({"A": price, "B": price}, {"A": "layer1", "B": "defi"},
                       {"A": np.full(n, 0.62), "B": np.full(n, 0.62)}, atr={"A": np.ones(n), "B": atr_b})


def _pal_run(parts):
    p = book(two_winners(), parts)
    p.run(0, 0, 12)
    return p, {c["symbol"]: c for c in p.closed}


def test_pal_adds_once_to_the_pil_winner_only_within_the_risk_room_and_pays_for_it():
    p, closed = _pal_run(oe.Parts(meta=False))
    assert p.counts["positions"] == 2 and p.counts["adds"] == 1  # one add, in the 4 h window
    assert closed["A"]["adds"] == 1 and closed["B"]["adds"] == 0
    # PAL asked for 1.5 x 6,360; the risk policy's 10,000 USD per position left 3,640
    assert p.counts["added_usd"] == pytest.approx(3_640.0)
    assert closed["A"]["opened_usd"] == pytest.approx(6_000 + 3_640)
    # every trade pays 0.1 %: A opens 6,000, adds 3,640, exits 10,000 (all at 106); B opens
    # 6,000 and exits 6,360. Each made 60 units x 6 USD.
    costs_a = PER_SIDE * (6_000 + 3_640 + 10_000)
    costs_b = PER_SIDE * (6_000 + 6_360)
    assert p.counts["costs_usd"] == pytest.approx(costs_a + costs_b, abs=1e-6)
    assert closed["A"]["pnl_usd"] == pytest.approx(360 - costs_a, abs=1e-6)
    assert closed["B"]["pnl_usd"] == pytest.approx(360 - costs_b, abs=1e-6)
    assert p.equity(12) == pytest.approx(100_000 + 720 - costs_a - costs_b, abs=1e-6)
    assert p.counts["pil_labels"].get("at_risk", 0) >= 1


def test_without_pil_pal_adds_to_every_position_in_profit():
    p, closed = _pal_run(oe.Parts(meta=False, pil=False))
    assert p.counts["adds"] == 2 and closed["B"]["adds"] == 1
    assert p.counts["costs_usd"] == pytest.approx(2 * PER_SIDE * (6_000 + 3_640 + 10_000), abs=1e-6)


def test_without_pal_there_are_no_adds():
    p, closed = _pal_run(oe.Parts(meta=False, pal=False))
    assert p.counts["adds"] == 0 and all(c["adds"] == 0 for c in closed.values())
    assert p.equity(12) == pytest.approx(100_000 + 720 - 2 * PER_SIDE * (6_000 + 6_360), abs=1e-6)


def test_without_pba_pal_room_is_the_risk_validators_only():
    """PBA's caps bind PAL's room: with a 5 % sector cap, A (6 % of equity at entry, 6.36 % at
    106) has no room for an add under PBA, and PBA trims it; without PBA it gets the add."""
    tight = oe.OrchestrationEvaluationConfig(meta_seeds=(0,), caps=oe.pba.BalancerCaps(max_sector_exposure_pct=5))
    on = book(two_winners(), oe.Parts(meta=False, pil=False), tight)
    on.run(0, 0, 12)
    off = book(two_winners(), oe.Parts(meta=False, pil=False, pba=False), tight)
    off.run(0, 0, 12)
    assert on.counts["adds"] == 0 and on.counts["reductions"] > 0
    assert off.counts["adds"] == 2 and off.counts["reductions"] == 0


def test_hfos_overrules_an_add_during_a_drawdown_beyond_its_threshold():
    """A stands at +6 % (an add, by PAL), but B, a 10,000 USD long, lost 60 %: the day's drawdown
    is 5.7 % > 5 %, so HFOS's own rule blocks amplification and the add is overruled."""
    n = 16
    a = np.where(np.arange(n) < 3, 100.0, 106.0)
    b = np.where(np.arange(n) < 3, 100.0, 40.0)
    market = make_market({"A": a, "B": b}, {"A": "layer1", "B": "defi"},
                         {"A": np.full(n, 0.62), "B": only_at(n, 0, 0.8)})
    p = book(market, oe.Parts(meta=False, pil=False))
    p.run(0, 0, 12)
    assert p.counts["adds"] == 0 and p.counts["adds_overruled"] >= 1
    # the same market with B flat: the add goes through
    calm = make_market({"A": a, "B": flat(n)}, {"A": "layer1", "B": "defi"},
                       {"A": np.full(n, 0.62), "B": only_at(n, 0, 0.8)})
    q = book(calm, oe.Parts(meta=False, pil=False))
    q.run(0, 0, 12)
    assert q.counts["adds"] == 1 and q.counts["adds_overruled"] == 0


# --- the meta-strategy's flag --------------------------------------------------------------------


def test_the_meta_strategy_learns_to_stand_aside_where_every_trade_loses():
    """Six symbols fall 0.1 % a bar while the model says up (P 0.8): every position loses. On
    the warm-up window the bandit learns that; in the evaluation window it stands aside (0 is
    better than the default's losses), where the meta-strategy off keeps trading and losing."""
    n = 1_400
    names = [f"S{i}" for i in range(6)]
    price = 100.0 * np.exp(-0.001 * np.arange(n))
    market = make_market({s: price for s in names}, {s: "meme" for s in names},
                         {s: np.full(n, 0.8) for s in names})
    warm, evaluation = (60, 800, 812), (900, 1_300, 1_312)
    on = oe.run_configuration(market, oe.Parts(), CFG, evaluation=evaluation, warmup=warm)
    off = oe.run_configuration(market, oe.Parts(meta=False), CFG, evaluation=evaluation, warmup=warm)
    assert on.counts["warmup"]["rewards"] >= 60  # it trained on the warm-up's closed positions
    assert off.counts["positions"] > 100 and on.counts["positions"] < off.counts["positions"] / 4
    assert on.counts["stood_aside"] > 0 and off.counts["stood_aside"] == 0
    assert on.equity[-1] > off.equity[-1]
    # the meta-strategy off always trades the default profile
    assert off.counts["profiles"] == {DEFAULT_PROFILE.name: off.counts["positions"]}


def test_run_outcome_averages_one_run_per_meta_seed_and_one_without_it():
    market = over_weight_sector(n=200)
    cfg = oe.OrchestrationEvaluationConfig(meta_seeds=(3, 4, 5))
    with_meta = oe.run_outcome(market, oe.Parts(), cfg, evaluation=(60, 100, 112))
    without = oe.run_outcome(market, oe.Parts(meta=False), cfg, evaluation=(60, 100, 112))
    assert len(with_meta.runs) == 3 and len(without.runs) == 1
    assert with_meta.period_returns == pytest.approx(np.mean([r.period_returns for r in with_meta.runs], axis=0))


def test_each_configuration_turns_exactly_one_part_off():
    configs = oe.configurations()
    assert configs[oe.FULL] == oe.Parts()
    for part in oe.PARTS:
        c = configs[f"without_{part}"]
        assert getattr(c, part) is False and all(getattr(c, q) for q in oe.PARTS if q != part)
    for part in oe.ISOLATED:
        c = configs[f"without_meta_{part}"]
        assert not c.meta and getattr(c, part) is False and all(getattr(c, q) for q in oe.ISOLATED if q != part)
    with pytest.raises(ValueError, match="unknown part"):
        oe.Parts().without("hfos")


# --- accounting, as a property --------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), pba_on=st.booleans(), pal_on=st.booleans(), pil_on=st.booleans())
def test_equity_is_the_sum_of_closed_positions_and_pba_keeps_its_caps(seed, pba_on, pal_on, pil_on):
    rng = np.random.default_rng(seed)
    n, names = 40, ["A", "B", "C", "D", "E"]
    closes = {s: 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n))) for s in names}
    p_up = {s: np.where(rng.random(n) < 0.5, rng.uniform(0.05, 0.95, n), np.nan) for s in names}
    atr = {s: rng.uniform(0.5, 3.0, n) for s in names}
    market = make_market(closes, dict(zip(names, ["x", "x", "x", "y", "y"], strict=True)), p_up, atr)
    p = book(market, oe.Parts(pba=pba_on, pal=pal_on, pil=pil_on, meta=False))
    for row in range(n):
        p.step(row, 24, n - 1)
        if pba_on and p.open:
            sectors, gross = p.exposures(row)
            eq = p.equity(row)
            # beyond cap + band PBA cuts back to the cap; the cuts' own costs are a hair on top
            assert max(sectors.values()) <= CAP_WITH_BAND * eq * 1.001
            assert gross <= (1.00 + float(CFG.caps.band_pct) / 100) * eq * 1.001
    assert not p.open
    assert p.equity(n - 1) == pytest.approx(100_000 + sum(c["pnl_usd"] for c in p.closed), abs=1e-6)
    assert p.counts["costs_usd"] >= 0 and all(c["opened_usd"] > 0 for c in p.closed)
    if not pal_on:
        assert p.counts["adds"] == 0
    if not pba_on:
        assert p.counts["reductions"] == 0


def test_costs_are_charged_at_the_configured_rate():
    market = over_weight_sector()
    free = oe.OrchestrationEvaluationConfig(meta_seeds=(0,), costs=Costs(taker_fee_rate=0.0, slippage_rate=0.0))
    p = book(market, oe.Parts(meta=False), free)
    p.run(0, 0, 12)
    assert p.counts["reductions"] == 4 and p.counts["costs_usd"] == 0
    assert p.equity(12) == pytest.approx(100_000, abs=1e-9)


# --- verdicts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0.1, 0.3, oe.HELPS), (-0.3, -0.1, oe.HURTS), (-0.1, 0.2, oe.INDISTINGUISHABLE), (0.0, 0.2, oe.INDISTINGUISHABLE),
    (None, None, oe.INDISTINGUISHABLE),
])
def test_the_verdict_reads_the_interval(lo, hi, expected):
    assert oe.word({"mean": 0.0, "lo": lo, "hi": hi}) == expected


def _path(returns):
    r = np.asarray(returns, float)
    k = np.arange(len(r))
    return oe.Path(rows=k, equity=np.cumprod(1 + r), period_returns=r, period_end_rows=k,
                   period_end_t_ms=START + BAR * k, period_equity=np.cumprod(1 + r), counts={}, closed=[])


@pytest.mark.parametrize(("shift", "expected"), [(3e-4, oe.HELPS), (-3e-4, oe.HURTS), (0.0, oe.INDISTINGUISHABLE)])
def test_compare_is_the_paired_difference_full_minus_ablated(shift, expected):
    rng = np.random.default_rng(5)
    base = rng.normal(1e-4, 2e-3, 300)
    noise = rng.normal(0, 1e-4, 300)
    noise -= noise.mean()
    out = oe.compare(oe.Outcome([_path(base + shift + noise)]), oe.Outcome([_path(base)]))
    assert out["verdict"] == expected
    assert out["difference_per_period"]["mean"] == pytest.approx(shift, abs=1e-12)
    same = oe.compare(oe.Outcome([_path(base)]), oe.Outcome([_path(base)]))
    assert same["identical"] and same["verdict"] == oe.INDISTINGUISHABLE


@pytest.mark.parametrize(("demo", "alone", "null", "default"), [
    (oe.HELPS, oe.HELPS, oe.INDISTINGUISHABLE, "on"), (oe.HELPS, oe.HELPS, oe.HELPS, "on"),
    (oe.HELPS, oe.HELPS, oe.HURTS, "off"), (oe.HELPS, oe.INDISTINGUISHABLE, oe.INDISTINGUISHABLE, "off"),
    (oe.INDISTINGUISHABLE, oe.HELPS, oe.INDISTINGUISHABLE, "off"), (oe.HURTS, oe.HURTS, oe.INDISTINGUISHABLE, "off"),
])
def test_a_part_is_on_by_default_only_when_it_helps_on_the_demo_market_alone_too_and_not_hurts_on_the_null(
        demo, alone, null, default):
    verdicts = {oe.DEMO: dict.fromkeys(oe.PARTS, demo), oe.NULL: dict.fromkeys(oe.PARTS, null)}
    isolated = {oe.DEMO: dict.fromkeys(oe.ISOLATED, alone)}
    rec = oe.recommend(verdicts, isolated)
    # the meta-strategy has no "alone" comparison: its own verdicts decide
    meta_default = "on" if demo == oe.HELPS and null != oe.HURTS else "off"
    assert {rec[p]["default"] for p in oe.ISOLATED} == {default} and rec["meta"]["default"] == meta_default
    assert all(r["reason"] for r in rec.values())


def test_stretching_keeps_directions_and_matches_the_spread():
    n = 50
    rng = np.random.default_rng(1)
    market = make_market({"A": flat(n), "B": flat(n)}, {"A": "x", "B": "y"},
                         {"A": 0.5 + rng.normal(0, 0.01, n), "B": 0.5 + rng.normal(0, 0.01, n)})
    windows = {"warmup": (0, 19, 20), "evaluation": (25, 49, 49)}
    out, k = oe.stretched(market, windows, {"warmup": 0.1, "evaluation": 0.05})
    assert oe.window_spread(out, windows["evaluation"]) == pytest.approx(0.05, rel=1e-6)
    assert k["warmup"] > k["evaluation"] > 1
    assert np.array_equal(np.sign(out.p_up - 0.5), np.sign(market.p_up - 0.5))
    assert np.array_equal(out.p_up[20:25], market.p_up[20:25])  # outside the windows: untouched


def test_bad_input_is_refused_with_its_name():
    with pytest.raises(ValueError, match="days"):
        oe.OrchestrationEvaluationConfig(days=2)
    with pytest.raises(ValueError, match="meta_seeds"):
        oe.OrchestrationEvaluationConfig(meta_seeds=())
    with pytest.raises(ValueError, match="close"):
        make_market({"A": np.array([100.0, -1.0])}, {"A": "x"}, {})
    with pytest.raises(ValueError, match="rows"):
        book(over_weight_sector(), oe.Parts()).run(5, 3, 10)


# --- the whole ablation, small ------------------------------------------------------------------


SMALL = oe.OrchestrationEvaluationConfig(days=12, meta_seeds=(0,), forecaster_params={"n_estimators": 60})


@pytest.fixture(scope="module")
def small_ablation():
    messages = []
    return oe.evaluate_orchestration(SMALL, progress=messages.append), messages


def test_the_small_ablation_is_out_of_sample_and_says_what_it_measured(small_ablation):
    s, messages = small_ablation
    assert set(s["markets"]) == {oe.DEMO, oe.NULL} and any("simulating" in m for m in messages)
    demo, null = s["markets"][oe.DEMO], s["markets"][oe.NULL]
    assert "planted" in demo["planted"] and demo["alpha"] == 0.5 and null["alpha"] == 0.0
    # the meta-strategy's warm-up window ends (exits included) before the evaluation starts
    assert demo["warmup_utc"][1] < demo["evaluation_utc"][0]
    for m in (demo, null):
        assert set(m["configurations"]) == set(oe.configurations())
        full = m["configurations"][oe.FULL]
        assert full["n_positions"] > 0 and len(full["equity"]["equity"]) == m["n_periods"]
        assert full["total_return"] == pytest.approx(full["equity"]["equity"][-1] - 1)
        for part in oe.PARTS:
            c = m["parts"][part]
            assert c["verdict"] in (oe.HELPS, oe.HURTS, oe.INDISTINGUISHABLE)
            assert c["difference_per_period"]["n"] == m["n_periods"]
    assert set(s["recommended_defaults"]) == set(oe.PARTS)
    assert any(line.startswith("Default for PBA") for line in s["statements"])
    assert math.isfinite(demo["configurations"]["without_pba"]["total_return"])


@pytest.mark.django_db
def test_evaluate_models_writes_the_orchestration_section_and_plot_only_when_asked(small_ablation, settings,
                                                                                  tmp_path, monkeypatch):
    """The command's wiring, with the ablation already computed by the fixture."""
    import json
    from io import StringIO
    from pathlib import Path

    from django.core.management import call_command

    from trading.simulator.service import seed_history

    s, _ = small_ablation
    seen = []

    def computed(config, *, null_market=True, progress=None):
        seen.append(config)
        progress("a progress line")
        return s

    monkeypatch.setattr(oe, "evaluate_orchestration", computed)
    settings.REPORTS_DIR = str(tmp_path / "reports")
    seed_history(days=3, seed=2)
    args = ["evaluate_models", "--models", "xgboost", "--folds", "2", "--sample-every", "3", "--seed", "3",
            "--no-null-control", "--no-sizing"]

    def run(*extra):
        out = StringIO()
        call_command(*args, *extra, stdout=out, stderr=StringIO())
        text = out.getvalue()
        folder = Path(text.strip().splitlines()[-1].split("report:", 1)[1].strip())
        return text, folder, json.loads((folder / "report.json").read_text())

    text, folder, doc = run("--orchestration", "--orchestration-days", "12", "--orchestration-seeds", "2")
    cfg = seen[0]
    assert (cfg.market_seed, cfg.days, cfg.meta_seeds) == (3, 12, (3, 4)) and cfg.alpha == settings.SIM_ALPHA
    assert doc["plots"]["orchestration"] == "orchestration.png"
    assert (folder / "orchestration.png").stat().st_size > 5000
    assert set(doc["orchestration"]["markets"]) == {oe.DEMO, oe.NULL}
    assert "a progress line" in text and "Default for PBA" in text
    assert doc["params"]["orchestration_seeds"] == 2

    text, folder, doc = run()
    assert len(seen) == 1 and "orchestration" not in doc and not (folder / "orchestration.png").exists()
