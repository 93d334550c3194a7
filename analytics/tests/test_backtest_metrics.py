"""The backtest report's figures (pure): hand-computed tables, a direct numpy cross-check of
Sharpe and Sortino, empyrical's formulas written out independently, properties over random
trade lists, and every refused input."""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.backtest.metrics import FIGURE_ORDER, MetricsError, Trade, compare, figures
from core.enums import PositionSide

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def times(n, bar=DAY, start=T0):
    return [start + i * bar for i in range(n)]


def trade(pnl, symbol="BTC/USDT", side=PositionSide.LONG, fees="1", funding="0", hours=2, entry=T0,
          amount="1", entry_price="100", exit_price="110"):
    return Trade(symbol=symbol, side=side, entry_time=entry, exit_time=entry + timedelta(hours=hours),
                 entry_price=D(entry_price), exit_price=D(exit_price), amount=D(amount), fees_usd=D(fees),
                 funding_usd=D(funding), pnl_usd=D(pnl))


def run(equity, bar=DAY, capital=None, exposure=None, trades=(), start=T0):
    return figures(times=times(len(equity), bar, start), equity=equity,
                   initial_capital=capital if capital is not None else equity[0], bar=bar,
                   gross_exposure=exposure if exposure is not None else [0] * len(equity), trades=trades)


# ---- the curve, by hand ------------------------------------------------------------------------

def test_the_hand_curve():
    # 100 -> 110 -> 99 -> 121: the peak 110 falls to 99 (10 %), the run ends 21 % up
    f = run([D(100), D(110), D(99), D(121)], exposure=[0, 1000, 1000, 0])
    assert f["total_return"] == pytest.approx(0.21)
    assert f["max_drawdown"] == pytest.approx(0.10)
    assert f["max_drawdown_peak_time"] == (T0 + DAY).isoformat()
    assert f["max_drawdown_trough_time"] == (T0 + 2 * DAY).isoformat()
    assert f["final_equity_usd"] == "121"
    assert f["exposure"] == 0.5
    assert f["bars_per_year"] == 365
    # 1.21 over 3 days, compounded to 365 days
    assert f["cagr"] == pytest.approx(1.21 ** (365 / 3) - 1)
    assert f["calmar"] == pytest.approx(f["cagr"] / 0.10)
    assert f["ruined"] is False and f["ruin_time"] is None


@pytest.mark.parametrize(("equity", "bar", "expected"), [
    # two years, 10 % a year: CAGR 10 %, total 21 %, no drawdown, no calmar, no deviation
    ([100, 110, 121], timedelta(days=365), {"cagr": 0.1, "total_return": 0.21, "max_drawdown": 0.0,
                                            "calmar": None, "sharpe": None, "sortino": None}),
    # flat: nothing moves
    ([100, 100, 100], DAY, {"cagr": 0.0, "total_return": 0.0, "max_drawdown": 0.0, "calmar": None,
                            "sharpe": None, "sortino": None}),
    # straight down by halves over a year (two bars a year): CAGR -75 %, max DD 75 %, calmar -1; the
    # returns do not vary (no sharpe), the downside deviation is 0.5: sortino -0.5 / 0.5 x sqrt(2)
    ([100, 50, 25], timedelta(days=182, hours=12), {"cagr": -0.75, "total_return": -0.75, "max_drawdown": 0.75,
                                                   "calmar": -1.0, "sharpe": None, "sortino": -math.sqrt(2)}),
    # up only: sortino has no downside, so none
    ([100, 110, 130], DAY, {"sortino": None, "max_drawdown": 0.0}),
])
def test_curve_figures_by_table(equity, bar, expected):
    f = run([D(e) for e in equity], bar=bar)
    for key, value in expected.items():
        assert f[key] == (pytest.approx(value) if value is not None else None), key
    if f["max_drawdown"] == 0:
        assert f["max_drawdown_peak_time"] is None and f["max_drawdown_trough_time"] is None


def test_total_return_is_against_the_initial_capital():
    # the curve's first point is after the first bar; capital was 100
    f = run([D(105), D(110)], capital=D(100))
    assert f["total_return"] == pytest.approx(0.10)


def test_a_short_run_with_a_huge_return_has_no_cagr_rather_than_an_overflow():
    f = run([D(100), D(200)], bar=timedelta(minutes=1))
    assert f["cagr"] is None and f["calmar"] is None
    assert f["total_return"] == 1.0


@pytest.mark.parametrize("equity", [
    [100, 110, 99, 121],
    [100, 101, 99, 102, 98, 103, 100],
    [1000, 990, 1010, 1005, 1020, 1000.5],
])
@pytest.mark.parametrize("bar", [HOUR, DAY, timedelta(minutes=5)])
def test_sharpe_and_sortino_against_a_direct_numpy_formula(equity, bar):
    e = np.array(equity, dtype=float)
    r = e[1:] / e[:-1] - 1
    n = 365 * 86400 / bar.total_seconds()
    sharpe = r.mean() / r.std(ddof=1) * math.sqrt(n)
    sortino = r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(n)
    f = run(equity, bar=bar)
    assert f["sharpe"] == pytest.approx(sharpe, rel=1e-12)
    assert f["sortino"] == pytest.approx(sortino, rel=1e-12)


# ---- ruin -------------------------------------------------------------------------------------

@pytest.mark.parametrize("equity", [[100, 50, -10, 80], [100, 50, 0, 80]])
def test_ruin_ends_the_run_at_minus_100_percent(equity):
    f = run([D(e) for e in equity], exposure=[1, 1, 0, 0])
    assert f["ruined"] is True
    assert f["ruin_time"] == (T0 + 2 * DAY).isoformat()
    assert f["final_equity_usd"] == "0"
    assert f["total_return"] == -1.0 and f["cagr"] == -1.0
    assert f["max_drawdown"] == 1.0 and f["calmar"] == -1.0
    assert f["bars"] == 3 and f["end"] == (T0 + 2 * DAY).isoformat()
    assert f["exposure"] == pytest.approx(2 / 3)
    json.dumps(f)


# ---- trades, by hand --------------------------------------------------------------------------

@pytest.mark.parametrize(("pnls", "win_rate", "profit_factor", "average", "best", "worst"), [
    (["10", "-5", "20", "-15", "0"], 0.4, 1.5, "2", "20", "-15"),
    # no losing trade: no profit factor (not infinity); a trade at zero is not a win
    (["10", "0"], 0.5, None, "5", "10", "0"),
    # only losers: profit factor 0
    (["-1", "-3"], 0.0, 0.0, "-2", "-1", "-3"),
])
def test_trade_figures_by_table(pnls, win_rate, profit_factor, average, best, worst):
    f = run([100, 101], trades=[trade(p) for p in pnls])
    assert f["trades"] == len(pnls)
    assert f["win_rate"] == pytest.approx(win_rate)
    assert f["profit_factor"] == (pytest.approx(profit_factor) if profit_factor is not None else None)
    assert D(f["average_trade_usd"]) == D(average)
    assert D(f["best_trade_usd"]) == D(best) and D(f["worst_trade_usd"]) == D(worst)


def test_no_trades():
    f = run([100, 101])
    assert f["trades"] == 0 and f["win_rate"] is None and f["profit_factor"] is None
    assert f["average_trade_usd"] is None and f["average_holding_seconds"] is None
    assert f["fees_paid_usd"] == "0" and f["per_symbol"] == {} and f["trade_list"] == []
    assert f["turnover"] == 0.0


def test_fees_funding_holding_turnover_and_the_per_symbol_breakdown():
    trades = [
        trade("8.5", "BTC/USDT", fees="1.25", funding="0.25", hours=2),
        trade("-3", "ETH/USDT", PositionSide.SHORT, fees="0.5", funding="-0.10", hours=4,
              amount="2", entry_price="50", exit_price="51.5"),
        trade("1", "BTC/USDT", fees="0.75", funding="0", hours=6),
    ]
    f = run([D(100), D(110), D(99), D(121)], trades=trades)
    assert f["fees_paid_usd"] == "2.50"
    assert f["funding_paid_usd"] == "0.15"
    assert f["average_holding_seconds"] == 4 * 3600
    # notional: 1 x (100 + 110) twice, 2 x (50 + 51.5) once = 623; average equity 107.5
    assert f["traded_notional_usd"] == "623.0"
    assert f["turnover"] == pytest.approx(623 / 107.5)
    assert f["turnover_per_year"] == pytest.approx(623 / 107.5 * 365 / 3)
    assert f["per_symbol"] == {
        "BTC/USDT": {"trades": 2, "net_pnl_usd": "9.5", "win_rate": 1.0, "fees_usd": "2.00", "funding_usd": "0.25"},
        "ETH/USDT": {"trades": 1, "net_pnl_usd": "-3", "win_rate": 0.0, "fees_usd": "0.5", "funding_usd": "-0.10"},
    }
    listed = f["trade_list"][1]
    assert listed == {"symbol": "ETH/USDT", "side": PositionSide.SHORT.value,
                      "entry_time": T0.isoformat(), "exit_time": (T0 + 4 * HOUR).isoformat(),
                      "entry_price": "50", "exit_price": "51.5", "amount": "2", "fees_usd": "0.5",
                      "funding_usd": "-0.10", "pnl_usd": "-3", "holding_seconds": 4 * 3600.0}
    assert json.loads(json.dumps(f)) == f


money = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"]), money,
                          st.decimals(min_value=0, max_value=50, places=2), money), max_size=25))
def test_per_symbol_sums_equal_the_totals(rows):
    trades = [trade(p, s, fees=fee, funding=fund) for s, p, fee, fund in rows]
    f = run([100, 101], trades=trades)
    parts = f["per_symbol"].values()
    assert sum(p["trades"] for p in parts) == f["trades"] == len(rows)
    net = sum((p for _, p, _, _ in rows), D(0))
    assert sum((D(p["net_pnl_usd"]) for p in parts), D(0)) == D(f["net_pnl_usd"]) == net
    assert sum((D(p["fees_usd"]) for p in parts), D(0)) == D(f["fees_paid_usd"])
    assert sum((D(p["funding_usd"]) for p in parts), D(0)) == D(f["funding_paid_usd"])
    if rows:
        wins = sum(1 for _, p, _, _ in rows if p > 0)
        assert sum(round(p["win_rate"] * p["trades"]) for p in parts) == wins
        assert f["win_rate"] == pytest.approx(wins / len(rows))
        assert D(f["worst_trade_usd"]) <= D(f["average_trade_usd"]) <= D(f["best_trade_usd"])


# ---- empyrical's formulas, written out here (no dependency) ------------------------------------

def emp_cum_returns_final(r):
    return np.prod(1 + r) - 1


def emp_max_drawdown(r):
    # empyrical: wealth from 100, starting point included, worst fall from the running peak
    cumulative = np.concatenate([[100.0], 100.0 * np.cumprod(1 + r)])
    peak = np.fmax.accumulate(cumulative)
    return -np.min((cumulative - peak) / peak)


def emp_sharpe(r, annualization):
    return np.mean(r) / np.std(r, ddof=1) * np.sqrt(annualization)


def emp_sortino(r, annualization):
    downside = np.sqrt(np.nanmean(np.square(np.clip(r, -np.inf, 0)))) * np.sqrt(annualization)
    return np.mean(r) * annualization / downside


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-0.3, max_value=0.3, allow_nan=False), min_size=3, max_size=60),
       st.sampled_from([HOUR, DAY, timedelta(minutes=15)]),
       st.lists(st.sampled_from(["12.5", "-4", "0", "7", "-0.01"]), max_size=12))
def test_against_empyrical_style_formulas(returns, bar, pnls):
    r = np.array(returns)
    equity = list(1000.0 * np.concatenate([[1.0], np.cumprod(1 + r)]))
    f = run(equity, bar=bar, capital=1000, trades=[trade(p) for p in pnls])
    annualization = 365 * 86400 / bar.total_seconds()
    assert f["total_return"] == pytest.approx(emp_cum_returns_final(r), rel=1e-9, abs=1e-12)
    assert f["max_drawdown"] == pytest.approx(emp_max_drawdown(r), rel=1e-9, abs=1e-12)
    if np.std(r, ddof=1) > 1e-12:
        assert f["sharpe"] == pytest.approx(emp_sharpe(r, annualization), rel=1e-6)
    if (r < 0).any() and np.sqrt(np.mean(np.minimum(r, 0) ** 2)) > 1e-12:
        assert f["sortino"] == pytest.approx(emp_sortino(r, annualization), rel=1e-6)
    if pnls:
        assert f["win_rate"] == pytest.approx(np.mean(np.array([float(p) for p in pnls]) > 0))


# ---- compare ----------------------------------------------------------------------------------

def test_compare_puts_two_runs_side_by_side_with_the_difference():
    a = run([D(100), D(110), D(99), D(121)], trades=[trade("10"), trade("-5")])
    b = run([D(100), D(105), D("102.5")], trades=[trade("3")])
    rows = compare(a, b)
    assert [row["figure"] for row in rows] == list(FIGURE_ORDER)
    by = {row["figure"]: row for row in rows}
    assert by["total_return"]["a"] == pytest.approx(0.21) and by["total_return"]["b"] == pytest.approx(0.025)
    assert by["total_return"]["difference"] == pytest.approx(0.025 - 0.21)
    assert by["final_equity_usd"]["difference"] == "-18.5"
    assert by["trades"]["difference"] == -1
    assert by["net_pnl_usd"]["difference"] == "-2"
    # a figure one run lacks, times and flags have no difference
    assert by["profit_factor"]["b"] is None and by["profit_factor"]["difference"] is None
    assert by["start"]["difference"] is None and by["ruined"]["difference"] is None
    json.dumps(rows)


def test_a_run_compared_with_itself_differs_by_nothing():
    a = run([D(100), D(110), D(99), D(121)], trades=[trade("10"), trade("-5")])
    for row in compare(a, a):
        assert row["difference"] in (None, 0, 0.0, "0", "0.0", "0.00"), row


# ---- refused input ----------------------------------------------------------------------------

NAIVE = datetime(2024, 1, 1)
PLUS2 = timezone(timedelta(hours=2))


def curve_args(**over):
    args = {"times": times(3), "equity": [100, 101, 102], "initial_capital": 100, "bar": DAY,
            "gross_exposure": [0, 0, 0], "trades": ()}
    args.update(over)
    return args


@pytest.mark.parametrize(("over", "names"), [
    ({"times": [NAIVE, NAIVE + DAY, NAIVE + 2 * DAY]}, "times[0]"),
    ({"times": [T0, T0 + DAY, datetime(2024, 1, 3, tzinfo=PLUS2)]}, "times[2]"),
    ({"times": [T0, T0 + 2 * DAY, T0 + DAY]}, "times[2]"),
    ({"times": [T0, T0 + DAY, T0 + DAY]}, "duplicate"),
    ({"times": [T0], "equity": [100], "gross_exposure": [0]}, "at least 2 points"),
    ({"times": [], "equity": [], "gross_exposure": []}, "at least 2 points"),
    ({"equity": [100, 101]}, "same length"),
    ({"equity": [100, float("nan"), 102]}, "equity[1]"),
    ({"equity": [100, 101, float("inf")]}, "equity[2]"),
    ({"equity": [100, "abc", 102]}, "equity[1]"),
    ({"initial_capital": 0}, "initial_capital"),
    ({"initial_capital": float("nan")}, "initial_capital"),
    ({"bar": timedelta(0)}, "bar"),
    ({"bar": 3600}, "bar"),
    ({"gross_exposure": [0, 0]}, "gross_exposure"),
    ({"gross_exposure": [0, -1, 0]}, "gross_exposure[1]"),
    ({"gross_exposure": [0, float("nan"), 0]}, "gross_exposure[1]"),
    ({"trades": [{"symbol": "BTC/USDT"}]}, "trades[0]"),
])
def test_bad_curves_are_refused_naming_the_field(over, names):
    with pytest.raises(MetricsError, match=names.replace("[", r"\[").replace("]", r"\]")):
        figures(**curve_args(**over))


@pytest.mark.parametrize(("over", "names"), [
    ({"exit_time": T0 - HOUR}, "exit_time"),
    ({"entry_time": NAIVE}, "entry_time"),
    ({"exit_time": datetime(2024, 1, 2, tzinfo=PLUS2)}, "exit_time"),
    ({"side": "sideways"}, "side"),
    ({"symbol": ""}, "symbol"),
    ({"entry_price": D(0)}, "entry_price"),
    ({"exit_price": D("NaN")}, "exit_price"),
    ({"amount": D(-1)}, "amount"),
    ({"fees_usd": D("-0.01")}, "fees_usd"),
    ({"funding_usd": float("inf")}, "funding_usd"),
    ({"pnl_usd": None}, "pnl_usd"),
])
def test_bad_trades_are_refused_naming_the_field(over, names):
    args = {"symbol": "BTC/USDT", "side": PositionSide.LONG, "entry_time": T0, "exit_time": T0 + HOUR,
            "entry_price": D(100), "exit_price": D(101), "amount": D(1), "fees_usd": D(0),
            "funding_usd": D(0), "pnl_usd": D(1)}
    args.update(over)
    with pytest.raises(MetricsError, match=names):
        Trade(**args)


def test_a_side_given_as_its_value_becomes_the_enum_member():
    t = Trade(symbol="BTC/USDT", side=PositionSide.SHORT.value, entry_time=T0, exit_time=T0, entry_price=D(1),
              exit_price=D(1), amount=D(1), fees_usd=D(0), funding_usd=D(0), pnl_usd=D(0))
    assert t.side is PositionSide.SHORT and t.holding == timedelta(0)
