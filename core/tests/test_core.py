"""The shared vocabulary: enums that round-trip to their stored strings, the one Decimal
conversion, step rounding."""
from __future__ import annotations

import ast
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.decimals import non_negative, positive, round_to_step, to_decimal, to_decimal_or_none
from core.enums import Mode, PositionSide, Side, SignalAction, Timeframe, choices

D = Decimal


def test_enums_are_their_stored_strings():
    assert Side.BUY == "buy" and Side("sell") is Side.SELL
    assert Mode("HALTED") is Mode.HALTED
    assert Side.BUY.opens is PositionSide.LONG and Side.SELL.opens is PositionSide.SHORT
    assert PositionSide.LONG.exit_side is Side.SELL and PositionSide.SHORT.exit_side is Side.BUY
    assert PositionSide.SHORT.entry_side is Side.SELL and PositionSide.SHORT.sign == -1
    assert Side.BUY.opposite is Side.SELL
    assert SignalAction.BUY.side is Side.BUY and SignalAction.HOLD.side is None


def test_timeframe_lengths():
    assert Timeframe.M5.seconds == 300 and Timeframe.H1.milliseconds == 3_600_000
    assert [t.seconds for t in Timeframe] == sorted(t.seconds for t in Timeframe)  # finest first
    with pytest.raises(ValueError, match="unknown timeframe '7m'; supported: 1m, 5m"):
        Timeframe.parse("7m")


def test_choices_carry_labels():
    assert choices(Side) == [("buy", "buy"), ("sell", "sell")]
    assert dict(choices(Mode, {Mode.HALTED: "HALTED (stop)"}))["HALTED"] == "HALTED (stop)"


@pytest.mark.parametrize("value,expected", [
    (D("1.50"), D("1.50")), (3, D(3)), ("0.1", D("0.1")), (" 2 ", D(2)), (0.1, D("0.1")),
    (np.float64(0.25), D("0.25")), (np.int64(7), D(7)),
])
def test_to_decimal_accepts_numbers(value, expected):
    assert to_decimal(value, "x") == expected


@pytest.mark.parametrize("value", [True, None, "abc", float("nan"), float("inf"), "Infinity", [1], D("NaN")])
def test_to_decimal_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(ValueError, match="^size_usd (must be a number|is not a finite number)"):
        to_decimal(value, "size_usd")


def test_bounds_and_optional():
    assert to_decimal_or_none(None) is None and to_decimal_or_none("2") == D(2)
    with pytest.raises(ValueError, match="amount must be > 0"):
        positive(0, "amount")
    with pytest.raises(ValueError, match="fee must be >= 0"):
        non_negative("-0.1", "fee")


def test_round_to_step_directions():
    assert round_to_step(D("1.239"), D("0.01")) == D("1.23")
    assert round_to_step(D("-1.239"), D("0.01")) == D("-1.23")  # toward zero
    assert round_to_step(D("1.231"), D("0.01"), ROUND_CEILING) == D("1.24")
    assert round_to_step(D("-1.231"), D("0.01"), ROUND_FLOOR) == D("-1.24")
    assert round_to_step(D("123456789012345678.123456789012"), D("0.000000000001")) == D(
        "123456789012345678.123456789012")  # more digits than the default context keeps
    with pytest.raises(ValueError, match="step must be > 0"):
        round_to_step(D(1), D(0))


@given(st.decimals(min_value=-10**9, max_value=10**9, places=8, allow_nan=False),
       st.sampled_from([D("0.001"), D("0.5"), D("1"), D("0.00000001")]))
def test_round_down_never_exceeds_and_is_a_multiple(x, step):
    r = round_to_step(x, step)
    assert abs(r) <= abs(x) and r % step == 0 and abs(x - r) < step


def test_core_imports_no_framework():
    """core is the bottom layer: the standard library only (import-linter checks the project's
    own packages; this also covers third-party ones)."""
    allowed = {"__future__", "enum", "decimal", "numbers"}
    for path in Path(__file__).resolve().parents[1].glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
