"""Walk-forward evaluation: cost accounting, baselines, weights from earlier folds only, and the
command end to end on a small seeded market (report files, EvaluationReport row, API)."""
import json
import math
from io import StringIO
from pathlib import Path

import numpy as np
import pytest

from ai.ensemble import PRIOR_WEIGHT
from ai.evaluation.walkforward import (
    BASELINES,
    actions_to_positions,
    baseline_positions,
    calibration_table,
    decision_grid,
    ensemble_weights_by_fold,
    trade,
)


def _trade(t, sym, fwd, pos, cost=0.001, h=1):
    return trade(np.array(t), np.array(sym), np.array(fwd), np.array(pos, dtype=float), horizon_bars=h, bar_ms=1,
                 cost_per_side=cost, periods_per_year=100.0)


def test_costs_are_charged_on_every_change_of_position_and_equity_is_exact():
    fwd = np.log([1.01, 0.98, 1.02, 1.0])
    r = _trade([0, 1, 2, 3], ["A"] * 4, fwd, [1, 1, -1, 0])
    # open long (1 side), hold (0), long -> short (2 sides), short -> flat (1 side)
    expected = [0.01 - 0.001, -0.02, -0.02 - 0.002, -0.001]
    assert r["equity"]["equity"] == pytest.approx(np.cumprod(1 + np.array(expected)).tolist(), abs=1e-12)
    assert r["total_return"] == pytest.approx(np.prod(1 + np.array(expected)) - 1, abs=1e-12)
    assert r["turnover"] == pytest.approx(4.0)
    assert r["n_trades"] == 3 and r["hit_rate"] == pytest.approx(1 / 3)  # +1%, -2%, short into +2%
    eq = np.cumprod(1 + np.array(expected))
    assert r["max_drawdown"] == pytest.approx(1 - eq[-1] / eq[0])


def test_a_gap_closes_the_position_and_two_symbols_share_capital_equally():
    # A: contiguous at 0 and 1, then a gap to 3: closed at the end of 1, reopened at 3, closed at the end
    r = _trade([0, 1, 3, 0, 1, 3], ["A", "A", "A", "B", "B", "B"], np.log([1.1, 1.0, 1.0, 1.0, 1.0, 1.0]),
               [1, 1, 1, 0, 0, -1], cost=0.01)
    a = [0.1 - 0.01, -0.01, -0.02]  # A per period: open, close at the gap, open + close
    b = [0.0, 0.0, -0.02]  # B: flat, flat, short opened and closed
    per_period = [(x + y) / 2 for x, y in zip(a, b, strict=True)]
    assert r["equity"]["t_ms"] == [0, 1, 3]
    assert r["equity"]["equity"] == pytest.approx(np.cumprod(1 + np.array(per_period)).tolist(), abs=1e-12)
    assert r["turnover"] == pytest.approx((1 + 1 + 2 + 0 + 0 + 2) / 2)


def test_no_costs_and_flat_positions_leave_equity_unchanged():
    r = _trade([0, 1, 2], ["A"] * 3, np.log([1.05, 0.9, 1.2]), [0, 0, 0], cost=0.0)
    assert r["total_return"] == 0.0 and r["turnover"] == 0.0 and r["hit_rate"] is None


def test_decision_grid_is_non_overlapping():
    t = np.arange(0, 30, 1) * 5
    assert decision_grid(t, horizon_bars=4, bar_ms=5).tolist() == [0, 20, 40, 60, 80, 100, 120, 140]
    assert decision_grid(np.array([0, 5, 10, 35, 40]), horizon_bars=3, bar_ms=5).tolist() == [0, 35]


def test_baselines():
    assert baseline_positions("buy_and_hold", n=3).tolist() == [1.0, 1.0, 1.0]
    assert baseline_positions("momentum", n=4, ret_12=np.array([0.01, -0.02, 0.0, 3.0])).tolist() == [1, -1, 0, 1]
    a = baseline_positions("random", n=2000, seed=7)
    assert np.array_equal(a, baseline_positions("random", n=2000, seed=7))
    assert not np.array_equal(a, baseline_positions("random", n=2000, seed=8))
    assert set(np.unique(a)) == {-1.0, 1.0} and abs(a.mean()) < 0.1
    with pytest.raises(ValueError):
        baseline_positions("momentum", n=2)
    assert BASELINES == ("buy_and_hold", "momentum", "random")
    # buy-and-hold carried through a window pays entry and exit only
    r = _trade([0, 1, 2], ["A"] * 3, np.log([1.01, 1.01, 1.01]), baseline_positions("buy_and_hold", n=3))
    assert r["turnover"] == pytest.approx(2.0)


def test_actions_follow_the_vote_threshold_and_calibration_deciles():
    assert actions_to_positions(np.array([0.6, 0.59, 0.41, 0.4, 0.5]), 0.6).tolist() == [1, 0, 0, -1, 0]
    rows = calibration_table(np.array([0.05, 0.05, 0.95, 1.0]), np.array([0, 1, 1, 1]))
    assert len(rows) == 10 and rows[0]["n"] == 2 and rows[0]["observed_up"] == 0.5 and rows[9]["n"] == 2


def test_weights_use_earlier_folds_only():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.where(y == 1, 0.8, 0.2)
    bad = np.where(y == 1, 0.3, 0.7)
    folds = [{"a": (good, y), "b": (bad, y)}, {"a": (good, y), "b": (bad, y)}, {"a": (good, y), "b": (bad, y)}]
    w = ensemble_weights_by_fold(folds, ["a", "b"])
    assert w[0] == {"a": PRIOR_WEIGHT, "b": PRIOR_WEIGHT}  # no track record before the first fold
    assert w[1]["a"] > 0.5 and w[1]["b"] == 0.0
    # a later fold's outcomes flip: b becomes perfect in fold 1. Folds 0 and 1 keep their weights.
    flipped = [folds[0], {"a": (bad, y), "b": (y.astype(float), y)}, folds[2]]
    w2 = ensemble_weights_by_fold(flipped, ["a", "b"])
    assert w2[0] == w[0] and w2[1] == w[1]
    assert w2[2] != w[2] and w2[2]["b"] > w[2]["b"]


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_evaluate_models_end_to_end_writes_the_report_and_lists_it(settings, tmp_path):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from ai.models import EvaluationReport
    from trading.simulator.service import seed_history

    settings.REPORTS_DIR = str(tmp_path / "reports")
    seed_history(days=3, seed=2)
    out = StringIO()
    # The sizing comparison trains a PPO agent (about a minute); its wiring is tested in
    # test_sizing_evaluation.py.
    call_command("evaluate_models", "--models", "xgboost", "lightgbm", "--folds", "3", "--sample-every", "2",
                 "--seed", "3", "--no-sizing", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "ensemble" in text and "buy_and_hold" in text and "report:" in text
    folder = Path(text.strip().splitlines()[-1].split("report:", 1)[1].strip())
    assert folder.parent == tmp_path / "reports"
    doc = json.loads((folder / "report.json").read_text())
    for png in ("equity.png", "calibration.png", "accuracy.png"):
        assert (folder / png).stat().st_size > 5000
    assert set(doc["models"]) == {"xgboost", "lightgbm"} and set(doc["baselines"]) == set(BASELINES)
    assert len(doc["folds"]) == 3 and doc["config"]["mode"] == "rolling" and doc["params"]["mode"] == "rolling"
    assert doc["folds"][0]["raw_weights"] == {"xgboost": PRIOR_WEIGHT, "lightgbm": PRIOR_WEIGHT}
    for f0, f1 in zip(doc["folds"], doc["folds"][1:], strict=False):
        assert f0["test_end_ms"] < f1["test_start_ms"] and f0["train_end_ms"] < f0["test_start_ms"]
    ens = doc["ensemble"]
    assert 0 <= ens["classification"]["accuracy"] <= 1 and math.isfinite(ens["classification"]["log_loss"])
    assert len(ens["classification"]["calibration"]) == 10 and len(ens["per_fold_accuracy"]) == 3
    assert ens["trading"]["n_periods"] == len(ens["trading"]["equity"]["equity"]) > 0
    # the verdict says plainly whether the ensemble beat the baselines
    v = doc["verdict"]
    assert ("does NOT beat" in v["headline"]) != v["ensemble_beats_all_baselines"]
    assert v["headline"] in text
    # with its interval, and beside a null-market control of the same size
    net = doc["significance"]["net_return_per_period"]
    assert net["lo"] <= net["mean"] <= net["hi"] and "95% interval" in text
    control = doc["controls"]["null_market"]
    assert control["alpha"] == 0.0 and control["n_symbols"] == doc["dataset"]["n_symbols"]
    assert "Null-market control" in text and control["significance"]["net_return_per_period"]["hi"] is not None

    row = EvaluationReport.objects.get()
    assert row.path == str(folder) and row.params["folds"] == 3 and row.summary["verdict"] == v

    client = APIClient()
    assert client.get("/api/reports/").status_code in (401, 403)
    user = get_user_model().objects.create_user("eval", password="x-eval-pw-1")
    client.force_authenticate(user)
    body = client.get("/api/reports/").json()
    items = body["results"] if isinstance(body, dict) else body
    assert [r["path"] for r in items] == [str(folder)]

    admin_user = get_user_model().objects.create_superuser("eval-admin", password="x-eval-pw-2")
    from django.test import Client

    web = Client()
    web.force_login(admin_user)
    page = web.get("/admin/ai/evaluationreport/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{folder.as_uri()}"' in html and v["headline"].split(":")[0] in html


class _Fake:
    """A stand-in forecaster: 'seer' reads the sign column, 'coin' answers about 0.5."""

    input_kind = "tab"

    def __init__(self, name):
        self.name = name

    def fit(self, X, y, Xv, yv, *, seed):  # noqa: N803 (the forecaster interface)
        assert len(X) and len(Xv)

    def predict_proba_up(self, X):  # noqa: N803
        if self.name == "seer":
            return np.where(X[:, 1] > 0, 0.8, 0.2)
        return 0.5 + 0.01 * np.tanh(X[:, 0])


def _synthetic(flip_window=None):
    from ai.features.dataset import Dataset

    rng = np.random.default_rng(1)
    bar, n_t, h = 300_000, 400, 2
    t = np.repeat(np.arange(n_t) * bar, 2)
    sym = np.tile(np.array(["A", "B"]), n_t)
    fwd = rng.normal(0, 0.005, 2 * n_t)
    sign_seen = np.sign(fwd)  # what the seer "sees"
    if flip_window is not None:  # the market does the opposite there; the features stay the same
        lo, hi = flip_window
        m = (t >= lo) & (t <= hi)
        fwd[m] = -fwd[m]
    x = np.stack([rng.normal(size=2 * n_t), sign_seen], axis=1).astype(np.float32)
    return Dataset(x, np.zeros((2 * n_t, 1, 1), np.float32), (fwd > 0).astype(np.int64), t, sym, t + h * bar, fwd,
                   ("ret_12", "sign"), ("ret_1",), "test", "x" * 64, h, 1, 0.002)


def test_evaluate_weights_each_fold_by_earlier_folds_only(monkeypatch):
    import ai.forecasters
    from ai.evaluation.walkforward import EvaluationConfig, evaluate

    monkeypatch.setattr(ai.forecasters, "create", lambda name, **kw: _Fake(name))
    cfg = EvaluationConfig(models=("seer", "coin"), n_folds=3, seed=1)
    base = evaluate(_synthetic(), cfg)
    w = [f["raw_weights"] for f in base["folds"]]
    assert w[0] == {"seer": PRIOR_WEIGHT, "coin": PRIOR_WEIGHT}
    assert w[1]["seer"] > 0.5 and w[2]["seer"] > 0.5 and base["ensemble"]["classification"]["accuracy"] == 1.0
    assert base["ensemble"]["trading"]["total_return"] > 0 and base["verdict"]["ensemble_beats_all_baselines"]

    last = base["folds"][-1]
    late = evaluate(_synthetic((last["test_start_ms"], last["test_end_ms"])), cfg)
    assert [f["raw_weights"] for f in late["folds"]] == w  # the last fold's outcomes weigh nothing before it
    assert late["folds"][-1]["accuracy"]["seer"] == 0.0 and late["ensemble"]["trading"]["total_return"] < \
        base["ensemble"]["trading"]["total_return"]

    first = base["folds"][0]
    early = evaluate(_synthetic((first["test_start_ms"], first["test_end_ms"])), cfg)
    assert early["folds"][0]["raw_weights"] == w[0] and early["folds"][1]["raw_weights"]["seer"] == 0.0


# --- the pipeline proved from both sides, on the simulator (pure, fixed seeds) -----------------

PROOF_START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
# The tabular models only, with fewer trees: the proof is about the pipeline (features, labels,
# purged walk-forward, ensemble weights from earlier folds, costs), and runs in seconds.
PROOF_CONFIG = dict(models=("xgboost", "lightgbm"), n_folds=4,
                    model_params={"xgboost": {"n_estimators": 300}, "lightgbm": {"n_estimators": 300}})


def _simulated_evaluation(alpha: float, seed: int = 11, days: int = 40) -> dict:
    from ai.evaluation.walkforward import EvaluationConfig, evaluate
    from ai.features.dataset import build_dataset
    from trading.simulator.model import BARS_PER_DAY, MarketSimulator
    from trading.simulator.universe import demo_config

    config = demo_config(PROOF_START_MS, alpha=alpha)
    batch = MarketSimulator(config, seed).generate(days * BARS_PER_DAY)
    ds = build_dataset(batch.ohlcv, band=0.0, sample_every=3, sectors={a.symbol: a.sector for a in config.assets})
    return evaluate(ds, EvaluationConfig(**PROOF_CONFIG))


def test_the_pipeline_finds_the_planted_edge_net_of_costs_beside_the_baselines():
    """The demo's planted strength: the walk-forward ensemble beats buy-and-hold, momentum and
    random net of fees and slippage, and its net return interval excludes zero."""
    res = _simulated_evaluation(alpha=0.5)
    why = "\n".join(res["verdict"]["statements"])
    assert res["verdict"]["ensemble_beats_all_baselines"], why
    sig = res["significance"]
    assert sig["edge"] and sig["net_return_per_period"]["lo"] > 0, why
    assert sig["accuracy"]["above_majority"], why
    assert sig["beats_beyond_noise"]["random"] and sig["beats_beyond_noise"]["buy_and_hold"], why


def test_the_pipeline_claims_no_edge_on_a_null_market():
    """Nothing planted (alpha 0): the same pipeline finds no edge. An edge here would be a leak
    (a feature or a label reading the future, a fold seeing its test window)."""
    res = _simulated_evaluation(alpha=0.0)
    sig = res["significance"]
    net = sig["net_return_per_period"]
    why = "\n".join(res["verdict"]["statements"])
    assert not sig["edge"], "an edge on the null market means a leak in the pipeline:\n" + why
    assert net["lo"] <= 0 <= net["hi"], why
    assert not sig["accuracy"]["above_majority"], "accuracy above the majority rate on a null market:\n" + why


def test_the_bootstrap_interval_covers_the_mean_and_narrows_with_more_data():
    from ai.evaluation.walkforward import bootstrap_mean_interval

    rng = np.random.default_rng(0)
    small, large = rng.normal(0.001, 0.01, 200), rng.normal(0.001, 0.01, 5000)
    a, b = bootstrap_mean_interval(small), bootstrap_mean_interval(large)
    assert a["lo"] < a["mean"] < a["hi"] and b["lo"] < 0.001 < b["hi"]
    assert (b["hi"] - b["lo"]) < (a["hi"] - a["lo"]) / 3
    assert bootstrap_mean_interval([1.0])["lo"] is None  # one period: no interval
