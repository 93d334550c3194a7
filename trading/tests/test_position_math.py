"""Position math (trading/positions/math.py): PnL, average entry, initial and trailing stops,
exits on a bar. Pure functions, no database: tables for the rules, hypothesis over random
price paths for the trailing stop's invariants."""
from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.positions.math import (
    TrailingState,
    average_entry,
    exit_hit,
    initial_stops,
    pnl_pct,
    realized_pnl_usd,
    unrealized_pnl_usd,
    update_trailing,
)

D = Decimal
PROPS = settings(max_examples=150, deadline=None)

# --------------------------------------------------------------------------- PnL


@pytest.mark.parametrize(
    ("side", "entry", "mark", "amount", "expected"),
    [
        ("long", D(100), D(110), D(2), D(20)),
        ("long", D(100), D(90), D(2), D(-20)),
        ("short", D(100), D(110), D(2), D(-20)),
        ("short", D(100), D(90), D(2), D(20)),
        ("long", D(100), D(100), D(5), D(0)),
        ("short", D("0.5"), D("0.25"), D("1000"), D("250")),
        ("long", D(100), D(110), D(0), D(0)),
    ],
)
def test_unrealized_pnl_sign(side, entry, mark, amount, expected):
    assert unrealized_pnl_usd(side, entry, mark, amount) == expected


@pytest.mark.parametrize(
    ("side", "entry", "exit_", "amount", "fees", "expected"),
    [
        ("long", D(100), D(110), D(2), D("1.5"), D("18.5")),
        ("short", D(100), D(90), D(2), D("1.5"), D("18.5")),
        ("long", D(100), D(95), D(2), D(1), D(-11)),
        ("short", D(100), D(105), D(2), D(1), D(-11)),
        ("long", D(100), D(100), D(2), D("0.4"), D("-0.4")),  # flat trade loses the fees
        ("long", D(100), D(100), D(2), D("-0.1"), D("0.1")),  # net maker rebate
    ],
)
def test_realized_pnl_net_of_fees(side, entry, exit_, amount, fees, expected):
    assert realized_pnl_usd(side, entry, exit_, amount, fees) == expected
    assert realized_pnl_usd(side, entry, exit_, amount, fees) == unrealized_pnl_usd(side, entry, exit_, amount) - fees


@pytest.mark.parametrize(
    ("side", "entry", "exit_", "leverage", "expected"),
    [
        ("long", D(100), D(105), D(1), D(5)),
        ("long", D(100), D(105), D(10), D(50)),
        ("long", D(100), D(95), D(10), D(-50)),
        ("short", D(100), D(105), D(3), D(-15)),
        ("short", D(100), D(95), D(1), D(5)),
        ("short", D(200), D(190), D("2.5"), D("12.5")),
    ],
)
def test_pnl_pct_is_return_on_margin(side, entry, exit_, leverage, expected):
    assert pnl_pct(side, entry, exit_, leverage) == expected


def test_pnl_pct_default_leverage_is_one():
    assert pnl_pct("long", D(100), D(102)) == D(2)


@pytest.mark.parametrize(
    ("old_amount", "old_entry", "add_amount", "add_price", "expected"),
    [
        (D(1), D(100), D(1), D(110), D(105)),
        (D(3), D(10), D(1), D(14), D(11)),
        (D(0), D(0), D(2), D(50), D(50)),  # a new position: the old entry is ignored
        (D(2), D(100), D(0), D(200), D(100)),
        (D("0.5"), D("60000"), D("1.5"), D("64000"), D("63000")),
    ],
)
def test_average_entry(old_amount, old_entry, add_amount, add_price, expected):
    assert average_entry(old_amount, old_entry, add_amount, add_price) == expected


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: unrealized_pnl_usd("long", D(0), D(1), D(1)), "entry_price"),
        (lambda: unrealized_pnl_usd("long", D(1), D(-1), D(1)), "mark_price"),
        (lambda: unrealized_pnl_usd("long", D(1), D(1), D(-1)), "amount"),
        (lambda: unrealized_pnl_usd("buy", D(1), D(1), D(1)), "side"),
        (lambda: realized_pnl_usd("short", D(1), D(0), D(1), D(0)), "exit_price"),
        (lambda: realized_pnl_usd("short", D(1), D(1), D(1), D("NaN")), "fees_usd"),
        (lambda: pnl_pct("long", D(-5), D(1)), "entry_price"),
        (lambda: pnl_pct("long", D(1), D(1), D(0)), "leverage"),
        (lambda: average_entry(D(0), D(0), D(0), D(1)), "amount"),
        (lambda: average_entry(D(1), D(0), D(1), D(1)), "old_entry"),
        (lambda: average_entry(D(1), D(1), D(1), D(0)), "add_price"),
        (lambda: average_entry(D(-1), D(1), D(1), D(1)), "old_amount"),
        (lambda: unrealized_pnl_usd("long", object(), D(1), D(1)), "entry_price"),
        (lambda: unrealized_pnl_usd("long", D("Infinity"), D(1), D(1)), "entry_price"),
    ],
)
def test_rejects_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_accepts_int_str_and_float():
    assert unrealized_pnl_usd("long", 100, "110", 0.1) == D("1.0")


# --------------------------------------------------------------------------- initial stops

MULTS = {"stop_loss_atr_multiple": D("1.5"), "take_profit_atr_multiple": D(3)}


@pytest.mark.parametrize(
    ("side", "entry", "atr", "kwargs", "expected"),
    [
        ("long", D(100), D(2), {}, (D(97), D(106))),
        ("short", D(100), D(2), {}, (D(103), D(94))),
        # no usable ATR: 2 % / 3 % of the entry
        ("long", D(100), None, {}, (D(98), D(103))),
        ("long", D(100), D(0), {}, (D(98), D(103))),
        ("short", D(100), D(-1), {}, (D(102), D(97))),
        ("short", D(100), None, {"fallback_stop_pct": D(1), "fallback_take_pct": D(5)}, (D(101), D(95))),
        # tick rounding away from the entry
        ("long", D("100.003"), D("0.0123"), {"tick_size": D("0.01")}, (D("99.98"), D("100.04"))),
        ("short", D("100.003"), D("0.0123"), {"tick_size": D("0.01")}, (D("100.03"), D("99.96"))),
        # huge ATR: a short's target and a long's stop floor at a tick, never <= 0
        ("short", D(100), D(80), {"tick_size": D("0.01")}, (D(220), D("0.01"))),
        ("long", D(100), D(80), {"tick_size": D("0.01")}, (D("0.01"), D(340))),
        ("short", D(100), D(80), {}, (D(220), D("0.01"))),  # no tick: 0.01 % of the entry
    ],
)
def test_initial_stops(side, entry, atr, kwargs, expected):
    assert initial_stops(side, entry, atr, **MULTS, **kwargs) == expected


@given(
    side=st.sampled_from(["long", "short"]),
    entry_ticks=st.integers(2, 10**7),
    atr_ticks=st.integers(0, 10**8),
    k_sl=st.integers(1, 100),
    k_tp=st.integers(1, 100),
    tick=st.sampled_from([D("0.01"), D("0.0001"), D(1), D("0.5")]),
)
@PROPS
def test_initial_stops_bracket_the_entry(side, entry_ticks, atr_ticks, k_sl, k_tp, tick):
    entry = entry_ticks * tick
    sl, tp = initial_stops(
        side, entry, atr_ticks * tick / 7, stop_loss_atr_multiple=D(k_sl) / 10,
        take_profit_atr_multiple=D(k_tp) / 10, tick_size=tick,
    )
    assert sl > 0 and tp > 0 and sl % tick == 0 and tp % tick == 0
    if side == "long":
        assert sl < entry < tp
    else:
        assert tp < entry < sl


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"entry_price": D(0)}, "entry_price"),
        ({"stop_loss_atr_multiple": D(0)}, "stop_loss_atr_multiple"),
        ({"take_profit_atr_multiple": D(-1)}, "take_profit_atr_multiple"),
        ({"tick_size": D(0)}, "tick_size"),
        ({"fallback_stop_pct": D(0)}, "fallback_stop_pct"),
        ({"side": "buy"}, "side"),
    ],
)
def test_initial_stops_rejects(kwargs, match):
    args = {"side": "long", "entry_price": D(100), "atr": D(1)} | MULTS
    with pytest.raises(ValueError, match=match):
        initial_stops(**(args | kwargs))


# --------------------------------------------------------------------------- trailing stop

TRAIL = {"atr": D(1), "trailing_atr_multiple": D(2), "break_even_trigger_pct": D(1), "fees_pct": D("0.1")}


@pytest.mark.parametrize(
    ("side", "state", "high", "low", "overrides", "expected"),
    [
        # long: trail to 103 - 2 and break-even (100.1) after a 3 % move; the trail is tighter
        ("long", (D(97), D(106), D(100), False), D(103), D(101), {}, (D(101), D(103), True)),
        # below the trigger: ATR trail only
        ("long", (D(97), D(106), D(100), False), D("100.5"), D(99), {}, (D("98.5"), D("100.5"), False)),
        # a lower bar does not lower the best price or loosen the stop, even with a wider ATR
        ("long", (D(101), D(106), D(103), True), D(102), D(99), {"atr": D(5)}, (D(101), D(103), True)),
        # no ATR: break-even only, at entry + fees
        ("long", (D(97), D(106), D(100), False), D("101.5"), D(100), {"atr": None}, (D("100.1"), D("101.5"), True)),
        # break-even disabled
        ("long", (D(97), None, D(100), False), D(110), D(100), {"atr": None, "break_even_trigger_pct": None},
         (D(97), D(110), False)),
        # short mirror: trail to 97 + 2, break-even at 99.9
        ("short", (D(103), D(94), D(100), False), D(99), D(97), {}, (D(99), D(97), True)),
        ("short", (D(103), D(94), D(100), False), D(101), D("99.5"), {}, (D("101.5"), D("99.5"), False)),
        ("short", (D(103), D(94), D(100), False), D("99.5"), D("98.5"), {"atr": None}, (D("99.9"), D("98.5"), True)),
        # tick: the trail rounds away from the price, break-even toward profit
        ("long", (D(97), D(106), D(100), False), D(103), D(101),
         {"atr": D("0.337"), "fees_pct": D("0.075"), "tick_size": D("0.01")}, (D("102.32"), D(103), True)),
        ("long", (D(97), D(106), D(100), False), D("101.2"), D(101),
         {"atr": D(10), "fees_pct": D("0.075"), "tick_size": D("0.01")}, (D("100.08"), D("101.2"), True)),
        ("short", (D(103), D(94), D(100), False), D("98.9"), D("98.8"),
         {"atr": D(10), "fees_pct": D("0.075"), "tick_size": D("0.01")}, (D("99.92"), D("98.8"), True)),
    ],
)
def test_update_trailing_table(side, state, high, low, overrides, expected):
    s = TrailingState(*state)
    got = update_trailing(s, side=side, entry_price=D(100), high=high, low=low, **(TRAIL | overrides))
    assert (got.stop_loss, got.best_price, got.break_even_done) == expected
    assert got.take_profit == s.take_profit


@st.composite
def price_paths(draw):
    """A random walk of bars in ticks of 0.01 around an entry of 100."""
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
    wicks = draw(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=n, max_size=n))
    atrs = draw(st.lists(st.one_of(st.none(), st.integers(0, 500)), min_size=n, max_size=n))
    bars, close = [], 10_000
    for step, (up, down), atr in zip(steps, wicks, atrs, strict=True):
        close = max(500, close + step)
        high, low = D(close + up) / 100, D(max(1, close - down)) / 100
        bars.append((high, low, None if atr is None else D(atr) / 100))
    return bars


@PROPS
@given(
    side=st.sampled_from(["long", "short"]),
    bars=price_paths(),
    multiple=st.sampled_from([D("0.5"), D(1), D(2), D(3)]),
    trigger=st.sampled_from([None, D(0), D("0.5"), D(1), D(3)]),
    fees=st.sampled_from([D(0), D("0.08"), D("0.2")]),
    tick=st.sampled_from([None, D("0.01"), D("0.05")]),
)
def test_trailing_stop_never_loosens(side, bars, multiple, trigger, fees, tick):
    entry = D(100)
    sl, tp = initial_stops(side, entry, D(1), stop_loss_atr_multiple=D(2), take_profit_atr_multiple=D(3))
    state = TrailingState(sl, tp, entry, False)
    be = entry * (1 + fees / 100) if side == "long" else entry * (1 - fees / 100)
    best = entry
    for high, low, atr in bars:
        new = update_trailing(
            state, side=side, entry_price=entry, high=high, low=low, atr=atr, trailing_atr_multiple=multiple,
            break_even_trigger_pct=trigger, fees_pct=fees, tick_size=tick,
        )
        best = max(best, high) if side == "long" else min(best, low)
        move = (best - entry) / entry * 100 if side == "long" else (entry - best) / entry * 100
        assert new.best_price == best
        assert new.take_profit == tp and new.stop_loss > 0
        if side == "long":
            assert new.stop_loss >= state.stop_loss
            if atr:
                assert new.stop_loss >= best - multiple * atr - (tick or 0)
        else:
            assert new.stop_loss <= state.stop_loss
            if atr:
                assert new.stop_loss <= best + multiple * atr + (tick or 0)
        assert new.break_even_done >= state.break_even_done  # once done, stays done
        assert new.break_even_done == (trigger is not None and move >= trigger)
        if new.break_even_done:
            assert new.stop_loss >= be if side == "long" else new.stop_loss <= be
        state = new


def test_trailing_state_is_frozen():
    s = TrailingState(D(1), None, D(2), False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.stop_loss = D(3)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"entry_price": D(0)}, "entry_price"),
        ({"high": D(0)}, "high"),
        ({"low": D(-1)}, "low"),
        ({"high": D(99), "low": D(101)}, "low"),
        ({"fees_pct": D(-1)}, "fees_pct"),
        ({"break_even_trigger_pct": D(-1)}, "break_even_trigger_pct"),
        ({"side": "sell"}, "side"),
    ],
)
def test_update_trailing_rejects(kwargs, match):
    args = {"side": "long", "entry_price": D(100), "high": D(101), "low": D(100)} | TRAIL
    with pytest.raises(ValueError, match=match):
        update_trailing(TrailingState(D(97), None, D(100), False), **(args | kwargs))


# --------------------------------------------------------------------------- exits


@pytest.mark.parametrize(
    ("side", "bar", "kwargs", "expected"),
    [
        # long, stop 95, target 110; bar = (high, low, close)
        ("long", (D(105), D(96), D(100)), {}, None),
        ("long", (D(105), D(95), D(100)), {}, ("stop_loss", D(95))),  # a touch is a hit
        ("long", (D(105), D(94), D(100)), {}, ("stop_loss", D(95))),
        ("long", (D(110), D(96), D(100)), {}, ("take_profit", D(110))),
        ("long", (D(112), D(94), D(100)), {}, ("stop_loss", D(95))),  # both: the stop first
        ("long", (D(112), D(94), D(100)), {"trailing": True}, ("trailing_stop", D(95))),
        ("long", (D(112), D(94), D(100)), {"open_": D(100)}, ("stop_loss", D(95))),  # both, open between
        ("long", (D(96), D(92), D(95)), {"open_": D(93)}, ("stop_loss", D(93))),  # gapped through the stop
        ("long", (D(112), D(92), D(100)), {"open_": D(95)}, ("stop_loss", D(95))),  # opened at the stop
        ("long", (D(113), D(104), D(108)), {"open_": D(111)}, ("take_profit", D(111))),  # gapped over the target
        ("long", (D(113), D(94), D(108)), {"open_": D(111)}, ("take_profit", D(111))),  # open says TP came first
        ("long", (D(94), D(90), D(92)), {}, ("stop_loss", D(92))),  # whole bar below, no open: close
        ("long", (D(94), D(90), D(92)), {"trailing": True}, ("trailing_stop", D(92))),
        ("long", (D(95), D(90), D(92)), {}, ("stop_loss", D(95))),  # high at the stop: traded there
        ("long", (D(115), D(111), D(112)), {}, ("take_profit", D(110))),  # whole bar above: the target
        ("long", (D(200), D(96), D(150)), {"take_profit": None}, None),
        # short, stop 105, target 90
        ("short", (D(104), D(91), D(100)), {}, None),
        ("short", (D(105), D(95), D(100)), {}, ("stop_loss", D(105))),
        ("short", (D(104), D(90), D(100)), {}, ("take_profit", D(90))),
        ("short", (D(106), D(89), D(100)), {}, ("stop_loss", D(105))),  # both: the stop first
        ("short", (D(106), D(89), D(100)), {"trailing": True}, ("trailing_stop", D(105))),
        ("short", (D(108), D(104), D(106)), {"open_": D(107)}, ("stop_loss", D(107))),
        ("short", (D(96), D(87), D(90)), {"open_": D(88)}, ("take_profit", D(88))),
        ("short", (D(108), D(106), D(107)), {}, ("stop_loss", D(107))),  # whole bar above, no open: close
        ("short", (D(89), D(85), D(86)), {}, ("take_profit", D(90))),
    ],
)
def test_exit_hit_table(side, bar, kwargs, expected):
    high, low, close = bar
    levels = (D(95), D(110)) if side == "long" else (D(105), D(90))
    args = {"stop_loss": levels[0], "take_profit": levels[1]}
    got = exit_hit(side=side, high=high, low=low, close=close, **(args | kwargs))
    assert got == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"high": D(0)}, "high"),
        ({"low": D(0)}, "low"),
        ({"high": D(99), "low": D(101), "close": D(100)}, "low"),
        ({"close": D(120)}, "close"),
        ({"open_": D(80)}, "open_"),
        ({"stop_loss": D(0)}, "stop_loss"),
        ({"take_profit": D(-1)}, "take_profit"),
        ({"side": "buy"}, "side"),
    ],
)
def test_exit_hit_rejects(kwargs, match):
    args = {"side": "long", "high": D(105), "low": D(96), "close": D(100), "stop_loss": D(95), "take_profit": D(110)}
    with pytest.raises(ValueError, match=match):
        exit_hit(**(args | kwargs))


@PROPS
@given(side=st.sampled_from(["long", "short"]), bars=price_paths())
def test_exit_price_is_a_price_of_the_bar_or_the_level(side, bars):
    """The exit price is the level when the bar traded at it, else a price the bar traded at."""
    stop, take = (D(97), D(104)) if side == "long" else (D(103), D(96))
    for high, low, _ in bars:
        close = (high + low) / 2
        hit = exit_hit(side=side, high=high, low=low, close=close, stop_loss=stop, take_profit=take)
        if hit is None:
            continue
        reason, price = hit
        assert reason in ("stop_loss", "take_profit")
        assert price in (stop, take) or low <= price <= high
        if reason == "stop_loss" and low <= stop <= high:
            assert price == stop
