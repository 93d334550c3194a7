"""User strategies: the interface, the loader, the shipped examples, the lookahead check and its command."""
import sys
import textwrap
from io import StringIO
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ai.strategies.base import (
    Param,
    Signals,
    Strategy,
    StrategyError,
    StrategyParamError,
    UnknownStrategy,
    crossed_above,
    run_strategy,
    trailing_mean,
    validate_signals,
)
from ai.strategies.ensemble import EnsembleStrategy
from ai.strategies.examples.ma_crossover import MACrossover
from ai.strategies.examples.momentum import Momentum
from ai.strategies.loader import find_strategy_class, load_strategy, parse_params
from ai.strategies.lookahead import cut_lengths, lookahead_analysis

BAR_MS = 300_000


def make_bars(n: int, seed: int = 0, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
    return np.column_stack([1_700_000_000_000 + np.arange(n) * BAR_MS, open_, high, low, close,
                            rng.uniform(1, 10, n)])


# --- planted strategies --------------------------------------------------------------------------

PLANTED_SOURCE = textwrap.dedent('''
    import numpy as np

    from ai.strategies.base import Signals, Strategy


    class PeekNextClose(Strategy):
        """Trades on the next bar's close: lookahead by construction."""

        name = "peek"

        def indicators(self, bars):
            close = bars[:, 4]
            return {"next_close": np.append(close[1:], np.nan)}

        def signals(self, bars, indicators):
            up = indicators["next_close"] - bars[:, 4]
            entry = np.where(np.isnan(up), 0, np.sign(up)).astype(int)
            return Signals(entry=entry, exit=np.zeros(len(bars), dtype=bool), confidence=np.abs(entry) * 0.5)
''')


class Centered(Strategy):
    """A centered 5-bar mean (bars t-2..t+2): a classic unintended lookahead."""

    name = "centered"

    def indicators(self, bars):
        close = bars[:, 4]
        out = np.full(len(close), np.nan)
        if len(close) >= 5:
            out[2:-2] = np.convolve(close, np.ones(5) / 5, mode="valid")
        return {"centered_mean": out}

    def signals(self, bars, indicators):
        n = len(bars)
        above = np.nan_to_num(bars[:, 4] - indicators["centered_mean"]) > 0
        return Signals(entry=above.astype(int), exit=np.zeros(n, dtype=bool), confidence=above * 1.0)


class Scripted(Strategy):
    """Returns whatever the test put in `out` (to feed malformed signals to the checks)."""

    name = "scripted"
    out = None

    def signals(self, bars, indicators):
        return self.out(len(bars))


class Raises(Strategy):
    name = "raiser"

    def indicators(self, bars):
        raise ZeroDivisionError("boom")


# --- Param ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("param, value, expected", [
    (Param(2, 10, 5, int), "7", 7),
    (Param(2, 10, 5, int), 10, 10),
    (Param(2, 10, 5, int), "4.0", 4),
    (Param(0.1, 1.0, 0.5), "0.25", 0.25),
    (Param(0.1, 1.0, 0.5), 1, 1.0),
])
def test_param_coerces_in_range_values(param, value, expected):
    got = param.coerce("s", "x", value)
    assert got == expected and type(got) is param.kind


@pytest.mark.parametrize("param, value, reason", [
    (Param(2, 10, 5, int), 11, r"outside \[2, 10\]"),
    (Param(2, 10, 5, int), "1", r"outside \[2, 10\]"),
    (Param(2, 10, 5, int), "4.5", "whole number"),
    (Param(2, 10, 5, int), "abc", "not a number"),
    (Param(0.1, 1.0, 0.5), "nan", "not finite"),
    (Param(0.1, 1.0, 0.5), True, "not a number"),
])
def test_param_refuses_bad_values_by_name(param, value, reason):
    with pytest.raises(StrategyParamError, match=rf"strategy s: parameter x=.*{reason}"):
        param.coerce("s", "x", value)


@pytest.mark.parametrize("args, reason", [
    ((1, 5, 7), "default 7 outside"),
    ((1, 5, 2.5, int), "whole number"),
    ((1, 5, 2, str), "kind must be int or float"),
    ((float("nan"), 5, 2), "finite"),
])
def test_param_declaration_is_checked(args, reason):
    with pytest.raises(ValueError, match=reason):
        Param(*args)


# --- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, window, expected", [
    ([1, 2, 3, 4], 2, [np.nan, 1.5, 2.5, 3.5]),
    ([1, 2, 3], 3, [np.nan, np.nan, 2.0]),
    ([1, 2], 3, [np.nan, np.nan]),
    ([np.nan, 2, 4, 6], 2, [np.nan, np.nan, 3.0, 5.0]),
])
def test_trailing_mean(x, window, expected):
    np.testing.assert_allclose(trailing_mean(np.array(x, dtype=float), window), expected)


def test_crossed_above():
    a = np.array([1.0, 3.0, 3.0, 1.0, np.nan, 5.0])
    b = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    assert crossed_above(a, b).tolist() == [False, True, False, False, False, False]


# --- the loader ----------------------------------------------------------------------------------


@pytest.fixture
def user_dir(tmp_path, settings, monkeypatch):
    folder = tmp_path / "strategies"
    folder.mkdir()
    settings.STRATEGIES_DIR = str(folder)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield folder
    for name in [m for m in sys.modules if m.startswith(("qt_user_strategies", "userpkg"))]:
        del sys.modules[name]


@pytest.mark.parametrize("spec, cls", [
    ("ma_crossover", MACrossover),
    ("momentum", Momentum),
    ("ensemble", EnsembleStrategy),
    ("ai.strategies.examples.momentum", Momentum),
    ("ai.strategies.examples.ma_crossover:MACrossover", MACrossover),
])
def test_shipped_strategies_are_found_by_name_and_dotted_path(spec, cls, user_dir):
    assert find_strategy_class(spec) is cls


def test_a_strategy_file_in_the_strategies_folder_is_found_by_name(user_dir):
    (user_dir / "peek.py").write_text(PLANTED_SOURCE)
    strat = load_strategy("peek")
    assert type(strat).__name__ == "PeekNextClose" and strat.name == "peek"


def test_a_file_in_the_strategies_folder_wins_over_a_shipped_one(user_dir):
    (user_dir / "momentum.py").write_text(PLANTED_SOURCE)
    assert type(load_strategy("momentum")).__name__ == "PeekNextClose"


def test_a_strategy_module_is_found_by_dotted_path(user_dir):
    pkg = user_dir.parent / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "peeker.py").write_text(PLANTED_SOURCE)
    assert type(load_strategy("userpkg.peeker")).__name__ == "PeekNextClose"
    assert type(load_strategy("userpkg.peeker:PeekNextClose")).__name__ == "PeekNextClose"


def test_params_reach_the_strategy_checked(user_dir):
    strat = load_strategy("ma_crossover", {"fast": "5", "slow": 20})
    assert strat.p == {"fast": 5, "slow": 20, "full_confidence_gap_pct": 0.5}
    assert strat.startup_bars == 20


@pytest.mark.parametrize("spec, params, exc, reason", [
    ("nosuch", None, UnknownStrategy, r"unknown strategy nosuch: looked in .*nosuch\.py; "
                                      r"ai\.strategies\.examples\.nosuch; module nosuch on sys\.path"),
    ("nosuch.module", None, UnknownStrategy, r"unknown strategy nosuch\.module: looked in module nosuch\.module"),
    ("ma_crossover:Nope", None, UnknownStrategy, "has no Strategy subclass named Nope"),
    ("ai.strategies.base", None, UnknownStrategy, "must define exactly one Strategy subclass"),
    ("not a name!", None, UnknownStrategy, "not a name, a dotted path or a .py file"),
    ("/nowhere/x.py", None, UnknownStrategy, "no file /nowhere/x.py"),
    ("ma_crossover", {"fats": 3}, StrategyParamError,
     r"strategy ma_crossover has no parameter fats \(its parameters: fast, full_confidence_gap_pct, slow\)"),
    ("ma_crossover", {"fast": 500}, StrategyParamError, r"parameter fast=500 outside \[2, 200\]"),
    ("ma_crossover", {"fast": 30, "slow": 20}, StrategyParamError, "fast=30 must be below slow=20"),
    ("momentum", {"threshold": "x"}, StrategyParamError, "parameter threshold='x' is not a number"),
])
def test_bad_strategy_specs_and_params_are_refused_with_the_reason(spec, params, exc, reason, user_dir):
    with pytest.raises(exc, match=reason):
        load_strategy(spec, params)


def test_a_strategy_that_fails_to_import_is_named(user_dir):
    (user_dir / "broken.py").write_text("import numpy\nraise RuntimeError('half written')\n")
    with pytest.raises(StrategyError, match=r"strategy broken: importing .*broken\.py failed: RuntimeError: half"):
        load_strategy("broken")
    (user_dir / "needs.py").write_text("import not_installed_anywhere_xyz\n")
    with pytest.raises(StrategyError, match="importing .*needs.py failed: ModuleNotFoundError"):
        load_strategy("needs")


@pytest.mark.parametrize("pairs, expected", [
    (["fast=5", " slow = 20 "], {"fast": "5", "slow": "20"}),
    ([], {}),
])
def test_parse_params(pairs, expected):
    assert parse_params(pairs) == expected


@pytest.mark.parametrize("pair", ["fast", "=3"])
def test_parse_params_refuses_a_pair_without_a_name(pair):
    with pytest.raises(StrategyError, match="write name=value"):
        parse_params([pair])


# --- run_strategy and validate_signals -----------------------------------------------------------


def _ok(n):
    return dict(entry=np.zeros(n, dtype=int), exit=np.zeros(n, dtype=bool), confidence=np.zeros(n))


def _with(n, **changes):
    cols = _ok(n)
    for key, (bar, value) in changes.items():
        arr = cols.get(key, np.full(n, np.nan)).astype(float)
        arr[bar] = value
        cols[key] = arr
    return Signals(**cols)


@pytest.mark.parametrize("make, reason", [
    (lambda n: Signals(**{**_ok(n), "entry": np.zeros(n - 1)}), r"entry has shape \(9,\), expected \(10,\)"),
    (lambda n: Signals(**{**_ok(n), "confidence": np.zeros((n, 2))}), r"confidence has shape \(10, 2\)"),
    (lambda n: _with(n, entry=(3, 2)), "entry at bar 3 is 2.0, not -1, 0 or 1"),
    (lambda n: _with(n, entry=(4, 0.5)), "entry at bar 4 is 0.5"),
    (lambda n: _with(n, exit=(6, 2)), "exit at bar 6 is 2.0, not a boolean"),
    (lambda n: _with(n, confidence=(5, np.nan)), r"confidence at bar 5 is nan \(NaN or infinite\)"),
    (lambda n: _with(n, confidence=(7, 1.5)), r"confidence at bar 7 is 1.5, outside \[0, 1\]"),
    (lambda n: _with(n, confidence=(1, -0.1)), r"confidence at bar 1 is -0.1, outside \[0, 1\]"),
    (lambda n: _with(n, stop_loss_pct=(8, -1.0)), "stop_loss_pct at bar 8 is -1.0; a stop is a positive"),
    (lambda n: _with(n, take_profit_pct=(2, np.inf)), "take_profit_pct at bar 2 is inf"),
    (lambda n: {"entry": []}, "signals\\(\\) returned dict, not Signals"),
])
def test_malformed_signals_are_refused_naming_strategy_and_bar(make, reason):
    strat = Scripted()
    strat.out = make
    with pytest.raises(StrategyError, match=rf"strategy scripted: {reason}"):
        run_strategy(strat, make_bars(10))


def test_validate_signals_normalizes_and_keeps_nan_as_no_stop():
    s = validate_signals(_with(4, stop_loss_pct=(1, 2.0)), 4, "x")
    assert s.entry.dtype == np.int8 and s.exit.dtype == bool
    assert np.isnan(s.stop_loss_pct[0]) and s.stop_loss_pct[1] == 2.0 and s.take_profit_pct is None


def test_a_strategy_that_raises_is_wrapped_with_its_name_step_and_bars():
    bars = make_bars(12)
    with pytest.raises(StrategyError, match=rf"strategy raiser raised at indicators\(\) on 12 bars \(last bar 11, "
                                            rf"t_ms={int(bars[-1, 0])}\): ZeroDivisionError: boom"):
        run_strategy(Raises(), bars)


@pytest.mark.parametrize("bars, reason", [
    (np.zeros((5, 5)), r"\(n, 6\) array"),
    (np.where(np.arange(30).reshape(5, 6) == 20, np.nan, 1.0), "row 3 has a NaN"),
    (np.column_stack([[0, 1, 1], np.ones((3, 5))]), "open time at row 2"),
])
def test_bad_bars_are_refused(bars, reason):
    with pytest.raises(ValueError, match=reason):
        run_strategy(MACrossover(), bars)


def test_an_indicator_of_the_wrong_length_is_refused():
    class Short(Strategy):
        name = "short_ind"

        def indicators(self, bars):
            return {"x": bars[1:, 4]}

    with pytest.raises(StrategyError, match=r"strategy short_ind: indicator x has shape \(19,\), expected \(20,\)"):
        run_strategy(Short(), make_bars(20))


# --- the examples --------------------------------------------------------------------------------


def test_ma_crossover_enters_on_the_crosses():
    close = np.array([10.0] * 5 + [11, 12, 13, 14, 15] + [14, 13, 12, 11, 10, 9, 8])
    bars = np.column_stack([np.arange(len(close)) * BAR_MS, close, close, close, close, np.ones(len(close))])
    run = run_strategy(MACrossover({"fast": 2, "slow": 4}), bars)
    entries = {int(i): int(run.signals.entry[i]) for i in np.flatnonzero(run.signals.entry)}
    # fast > slow from the first rise (bar 5), fast < slow from bar 11 (two bars into the fall)
    assert entries == {5: 1, 11: -1}
    assert run.signals.exit[[5, 11]].all() and run.signals.exit.sum() == 2
    assert 0 < run.signals.confidence[5] <= 1 and run.signals.confidence[0] == 0


def test_momentum_enters_on_a_jump_and_carries_its_stops():
    close = np.concatenate([100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.001, 60))), [0]])
    close[-1] = close[-2] * 1.05  # a 5 % jump on the last bar
    bars = np.column_stack([np.arange(len(close)) * BAR_MS, close, close, close, close, np.ones(len(close))])
    strat = Momentum({"lookback": 1, "window": 20, "threshold": 2.0, "stop_loss_pct": 1.5})
    run = run_strategy(strat, bars)
    assert run.signals.entry[-1] == 1 and run.signals.confidence[-1] == 1.0
    assert run.signals.stop_loss_pct[-1] == 1.5 and run.signals.take_profit_pct[-1] == 4.0
    assert (run.signals.entry[:strat.startup_bars] == 0).all()


EXAMPLES = [
    MACrossover,
    lambda: MACrossover({"fast": 3, "slow": 7}),
    Momentum,
    lambda: Momentum({"lookback": 3, "window": 15, "threshold": 0.8}),
]


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(range(len(EXAMPLES))), n=st.integers(2, 300), seed=st.integers(0, 10_000),
       vol=st.sampled_from([0.0, 1e-4, 0.01, 0.05]), data=st.data())
def test_examples_give_one_answer_per_bar_and_never_read_the_future(which, n, seed, vol, data):
    strat = EXAMPLES[which]()
    bars = make_bars(n, seed, vol)
    full = run_strategy(strat, bars)
    assert all(len(v) == n for v in full.columns().values())
    k = data.draw(st.integers(1, n))
    cut = run_strategy(strat, bars[:k])
    for column, values in cut.columns().items():
        np.testing.assert_allclose(values, full.columns()[column][:k], rtol=1e-9, atol=1e-12, equal_nan=True,
                                   err_msg=f"{strat.name} {column} changed when bars after {k - 1} were cut")


# --- lookahead -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, startup, cuts, expected", [
    (10, 0, 3, [1, 5, 9]),
    (10, 7, 20, [8, 9]),
    (100, 10, 1, [99]),
])
def test_cut_lengths(n, startup, cuts, expected):
    assert cut_lengths(n, startup, cuts) == expected


def test_cut_lengths_refuses_too_few_bars():
    with pytest.raises(ValueError, match="give at least 12 bars"):
        cut_lengths(10, 10)


def _peek_strategy(tmp_path):
    (tmp_path / "peek_planted.py").write_text(PLANTED_SOURCE)
    return load_strategy(str(tmp_path / "peek_planted.py"))


def test_lookahead_catches_reading_the_next_bar_at_the_exact_bar_and_column(tmp_path):
    bars = make_bars(200, seed=3)
    report = lookahead_analysis(_peek_strategy(tmp_path), bars, lengths=[50, 120, 199])
    assert report.biased
    found = {(d.bar, d.column) for d in report.differences}
    # The cut's last bar has no next close: NaN where the full run saw it, and so no entry.
    assert found == {(b, c) for b in (49, 119, 198) for c in ("next_close", "entry", "confidence")}
    d = next(d for d in report.differences if d.bar == 49 and d.column == "next_close")
    assert d.full == bars[50, 4] and np.isnan(d.cut) and d.t_ms == int(bars[49, 0]) and d.cut_length == 50


def test_lookahead_catches_a_centered_rolling_mean():
    report = lookahead_analysis(Centered(), make_bars(100, seed=5), lengths=[40, 80])
    mean_bars = sorted(d.bar for d in report.differences if d.column == "centered_mean")
    assert mean_bars == [38, 39, 78, 79]
    assert "centered_mean" in report.columns()


@pytest.mark.parametrize("strat", [MACrossover(), Momentum(), Momentum({"lookback": 2, "window": 10})],
                         ids=lambda s: s.name)
def test_the_shipped_strategies_pass_the_lookahead_check(strat):
    report = lookahead_analysis(strat, make_bars(500, seed=11), n_cuts=15)
    assert not report.biased, [d.describe() for d in report.differences[:5]]
    assert len(report.cut_lengths) == 15


# --- the ensemble strategy (a stand-in engine: the wiring, not the models) ----------------------------


class _Forecaster:
    def __init__(self, kind, sign):
        self.input_kind, self.sign = kind, sign

    def predict_proba_up(self, features):
        x = features[:, 0] if features.ndim == 2 else features[:, -1, 0]
        return 1.0 / (1.0 + np.exp(-self.sign * 500.0 * x))


def _engine(quarantined=()):
    serving = [SimpleNamespace(version=SimpleNamespace(model_type=t), forecaster=_Forecaster(kind, sign))
               for t, kind, sign in [("tabby", "tab", 1.0), ("seqy", "seq", 1.0), ("contra", "tab", -1.0)]]
    return SimpleNamespace(serving=serving, quarantined=dict.fromkeys(quarantined, "q"),
                           weights=lambda: {"tabby": 1.0, "seqy": 1.0, "contra": 0.5}, refresh=lambda: None)


def test_the_ensemble_strategy_votes_per_bar_with_the_engines_models():
    from ai.ensemble import vote

    bars = make_bars(400, seed=2)
    strat = EnsembleStrategy({"min_confidence": 0.55}, engine=_engine())
    run = run_strategy(strat, bars)
    probs = {k[5:]: v for k, v in run.indicators.items()}
    assert set(probs) == {"tabby", "seqy", "contra"}
    assert np.isnan(probs["tabby"][:strat.startup_bars]).all() and np.isfinite(probs["tabby"][-50:]).all()
    for t in (350, 399):
        v = vote({m: p[t] for m, p in probs.items()}, {"tabby": 1.0, "seqy": 1.0, "contra": 0.5},
                 min_confidence_threshold=0.55)
        assert run.signals.confidence[t] == pytest.approx(v.confidence)
        assert run.signals.entry[t] == {"BUY": 1, "SELL": -1}.get(str(v.action), 0)
    assert (run.signals.entry != 0).any()
    assert not lookahead_analysis(strat, bars, n_cuts=4).biased


def test_a_quarantined_model_does_not_vote_and_no_model_is_an_error():
    bars = make_bars(300, seed=2)
    alone = run_strategy(EnsembleStrategy(engine=_engine(quarantined=("seqy", "contra"))), bars)
    t = np.flatnonzero(np.isfinite(alone.indicators["p_up_tabby"]))[-1]
    p = alone.indicators["p_up_tabby"][t]
    assert alone.signals.confidence[t] == pytest.approx(max(p, 1 - p))
    empty = SimpleNamespace(serving=[], quarantined={}, weights=dict, refresh=lambda: None)
    with pytest.raises(StrategyError, match="strategy ensemble raised at indicators.*no model serves"):
        run_strategy(EnsembleStrategy(engine=empty), bars)


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def stored_bars(db):
    from trading.simulator.service import seed_history

    seed_history(days=2, seed=4)
    from trading.models import Symbol

    return Symbol.objects.filter(exchange="paper", active=True).order_by("symbol").first().symbol


def test_the_command_passes_a_shipped_strategy(stored_bars):
    out, err = StringIO(), StringIO()
    call_command("lookahead_analysis", "--strategy", "ma_crossover", "--params", "fast=5", "slow=20",
                 "--bars", "300", "--cuts", "6", stdout=out, stderr=err)
    assert "no lookahead" in out.getvalue() and "on 6 cuts as on the full 300 bars" in out.getvalue()
    assert "6/6" in err.getvalue()  # the progress bar


def test_the_command_reports_a_planted_lookahead_from_the_strategies_folder(stored_bars, user_dir):
    (user_dir / "peek.py").write_text(PLANTED_SOURCE)
    out = StringIO()
    with pytest.raises(CommandError, match=r"lookahead: strategy peek has 9 values .* columns confidence, entry, "
                                           r"next_close"):
        call_command("lookahead_analysis", "--strategy", "peek", "--symbol", stored_bars, "--bars", "100",
                     "--cuts", "3", stdout=out, stderr=StringIO())
    lines = out.getvalue().splitlines()
    # cuts after bars 0, 49 and 98 of the 100 (the cut lengths 1, 50, 99)
    assert any(line.startswith("bar 49 (t_ms=") and "next_close" in line for line in lines)
    assert sum("bar 98 (" in line for line in lines) == 3


def test_the_command_loads_a_dotted_path_and_refuses_bad_input(stored_bars, user_dir):
    pkg = user_dir.parent / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "peeker.py").write_text(PLANTED_SOURCE)
    with pytest.raises(CommandError, match="lookahead: strategy peek"):
        call_command("lookahead_analysis", "--strategy", "userpkg.peeker", "--bars", "60", "--cuts", "2",
                     stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="unknown strategy nosuch"):
        call_command("lookahead_analysis", "--strategy", "nosuch", stdout=StringIO())
    with pytest.raises(CommandError, match="parameter fast=0 outside"):
        call_command("lookahead_analysis", "--strategy", "ma_crossover", "--params", "fast=0", stdout=StringIO())
    with pytest.raises(CommandError, match="NOPE/USDT"):
        call_command("lookahead_analysis", "--strategy", "ma_crossover", "--symbol", "NOPE/USDT", stdout=StringIO())
    with pytest.raises(CommandError, match="needs at least 1002"):
        call_command("lookahead_analysis", "--strategy", "ma_crossover", "--params", "slow=1000", "--bars", "500",
                     stdout=StringIO())
