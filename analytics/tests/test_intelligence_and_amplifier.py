"""PIL's classification and PAL's decision (pure): tables and properties."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.orchestration.amplifier import AmplifierConfig, AmplifierError, decide
from analytics.orchestration.intelligence import IntelligenceError, PositionFacts, classify

D = Decimal
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def facts(**kw):
    base = {"side": "long", "entry_price": D(100), "mark_price": D(106), "bars_open": 3, "horizon_bars": 12,
            "signal_side": "long", "atr_now": D(1), "atr_at_entry": D(1), "liquidation_price": D(50)}
    return PositionFacts(**{**base, **kw})


@pytest.mark.parametrize(("kw", "label", "reason"), [
    ({}, "winner", "unrealized PnL 6.00%"),
    ({"mark_price": D(97)}, "loser", "unrealized PnL -3.00%"),
    ({"side": "short", "mark_price": D(94), "signal_side": "short"}, "winner", "unrealized PnL 6.00%"),
    ({"signal_side": "short"}, "at_risk", "the signal reversed to short"),
    ({"atr_now": D(2)}, "at_risk", "volatility spiked"),
    ({"liquidation_price": D(104)}, "at_risk", "liquidation near"),
    ({"mark_price": D("100.2"), "bars_open": 12}, "stale", "12 bars open (horizon 12)"),
    ({"mark_price": D("100.2"), "bars_open": 11}, "winner", "unrealized PnL 0.20%"),
])
def test_pil_classes_by_table(kw, label, reason):
    a = classify(facts(**kw))
    assert a.label == label and a.reasons[0].startswith(reason)
    assert -1 <= a.score <= 1


@pytest.mark.parametrize(("kw", "message"), [
    ({"side": "up"}, "side must be long or short"),
    ({"entry_price": D(0)}, "entry_price must be > 0"),
    ({"atr_now": D(-1)}, "atr_now must be > 0 when known"),
    ({"horizon_bars": 0}, "horizon_bars >= 1"),
])
def test_pil_refuses_bad_facts_naming_the_field(kw, message):
    with pytest.raises(IntelligenceError, match=message):
        facts(**kw)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["long", "short"]), st.decimals(min_value=D(1), max_value=D(1000), places=2),
       st.decimals(min_value=D(1), max_value=D(1000), places=2), st.sampled_from([None, "long", "short"]))
def test_pil_a_winner_is_never_against_its_signal_and_the_score_is_bounded(side, entry, mark, signal):
    a = classify(PositionFacts(side=side, entry_price=entry, mark_price=mark, bars_open=1, horizon_bars=12,
                               signal_side=signal))
    assert -1 <= a.score <= 1
    if a.label == "winner":
        assert a.pnl_pct >= 0 and signal in (None, side)


CFG = AmplifierConfig()


def pal(**kw):
    base = {"label": "winner", "pnl_pct": D(6), "side": "long", "signal_side": "long", "notional_usd": D(1000),
            "room_usd": D(5000), "last_add_at": None, "now": NOW, "config": CFG}
    return decide(**{**base, **kw})


@pytest.mark.parametrize(("kw", "action", "size", "reason"), [
    ({}, "add", D("1500.00"), "winner at 6.00% with the signal"),
    ({"room_usd": D(700)}, "add", D("700.00"), "winner"),
    ({"room_usd": D(0)}, "hold", D(0), "no room left"),
    ({"label": "at_risk"}, "hold", D(0), "classed at_risk"),
    ({"pnl_pct": D("4.99")}, "hold", D(0), "unrealized PnL 4.99% < 5%"),
    ({"signal_side": "short"}, "hold", D(0), "the current signal (short) does not agree"),
    ({"signal_side": None}, "hold", D(0), "the current signal (none) does not agree"),
    ({"last_add_at": NOW - timedelta(hours=1)}, "hold", D(0), "already amplified"),
    ({"last_add_at": NOW - timedelta(hours=5)}, "add", D("1500.00"), "winner"),
])
def test_pal_by_table(kw, action, size, reason):
    out = pal(**kw)
    assert (out.action, out.add_size_usd) == (action, size) and out.reason.startswith(reason)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: AmplifierConfig(min_profit_pct=D(0)), "min_profit_pct must be in (0, 100]"),
    (lambda: AmplifierConfig(factor=D(6)), "factor must be in (0, 5]"),
    (lambda: pal(notional_usd=D(0)), "notional_usd must be > 0"),
    (lambda: pal(now=datetime(2026, 12, 7)), "timezone-aware"),
])
def test_pal_refuses_bad_input_naming_it(call, message):
    with pytest.raises(AmplifierError, match=message.replace("(", r"\(").replace("]", r"\]")):
        call()


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=D("0.01"), max_value=D(100000), places=2),
       st.decimals(min_value=D(-1000), max_value=D(100000), places=2))
def test_pal_never_adds_beyond_the_room_or_the_factor(notional, room):
    out = pal(notional_usd=notional, room_usd=room)
    assert 0 <= out.add_size_usd <= max(room, D(0)) and out.add_size_usd <= notional * CFG.factor
    assert (out.action == "add") == (out.add_size_usd > 0)
