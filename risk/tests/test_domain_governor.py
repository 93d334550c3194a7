"""The safety governor's decisions (no database)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from risk.domain.governor import GovernorInput, assess, consecutive_losses, drawdown_pct, next_utc_midnight
from risk.domain.modes import Mode
from risk.domain.policy import Policy

D = Decimal
NOW = datetime(2025, 3, 30, 14, 30, tzinfo=UTC)
POLICY = Policy()  # daily 10 %, emergency 15 %, 5 losses


def inp(equity="10000", day_start="10000", losses=0, mode=Mode.NORMAL, blocked=None, now=NOW, policy=POLICY):
    return GovernorInput(policy=policy, mode=mode, equity_usd=D(equity), day_start_equity_usd=D(day_start),
                         consecutive_losses=losses, entries_blocked_until=blocked, now=now)


def test_within_limits():
    a = assess(inp(equity="9500", losses=4))
    assert (a.kind, a.drawdown_pct, a.block_until) == ("none", D(5), None)
    assert assess(inp(equity="12000")).drawdown_pct == D(-20)  # a winning day


def test_emergency_stop_at_exactly_the_limit():
    a = assess(inp(equity="8500"))
    assert a.kind == "emergency_stop" and a.drawdown_pct == D(15)
    assert "15.00%" in a.reason and "emergency drawdown 15%" in a.reason and "flatten" in a.reason
    assert assess(inp(equity="8500.01")).kind == "block_entries"  # 14.9999 %: the daily limit only
    no_flatten = Policy.from_values({"flatten_on_emergency": False})
    assert "flatten" not in assess(inp(equity="8000", policy=no_flatten)).reason


@pytest.mark.parametrize("mode", [Mode.NORMAL, Mode.SHADOW, Mode.REDUCE_ONLY])
def test_emergency_stop_from_any_mode_but_halted(mode):
    assert assess(inp(equity="5000", mode=mode, losses=9)).kind == "emergency_stop"


def test_already_halted_needs_nothing():
    a = assess(inp(equity="5000", mode=Mode.HALTED, losses=9))
    assert a.kind == "none" and a.drawdown_pct == D(50) and "already HALTED" in a.reason


def test_losing_streak_reduce_only():
    a = assess(inp(losses=5))
    assert a.kind == "reduce_only" and "5 consecutive losing trades >= limit 5" in a.reason
    assert assess(inp(losses=4)).kind == "none"
    assert assess(inp(losses=7, mode=Mode.SHADOW)).kind == "reduce_only"
    # already restricted: nothing to do for the streak
    assert assess(inp(losses=7, mode=Mode.REDUCE_ONLY)).kind == "none"
    assert assess(inp(losses=7, mode=Mode.HALTED)).kind == "none"
    # the streak outranks the daily drawdown; the emergency outranks both
    assert assess(inp(equity="9000", losses=5)).kind == "reduce_only"
    assert assess(inp(equity="8000", losses=5)).kind == "emergency_stop"


def test_daily_drawdown_blocks_entries_until_midnight():
    a = assess(inp(equity="9000"))  # exactly 10 %
    assert a.kind == "block_entries" and a.drawdown_pct == D(10)
    assert a.block_until == datetime(2025, 3, 31, tzinfo=UTC)
    assert "max daily drawdown 10%" in a.reason and "2025-03-31T00:00:00+00:00" in a.reason
    assert assess(inp(equity="9000.01")).kind == "none"
    # already blocked: nothing new until the block has run out
    assert assess(inp(equity="9000", blocked=NOW + timedelta(hours=2))).kind == "none"
    again = assess(inp(equity="9000", blocked=NOW))
    assert again.kind == "block_entries" and again.block_until == datetime(2025, 3, 31, tzinfo=UTC)
    assert assess(inp(equity="9000", blocked=NOW - timedelta(days=1))).kind == "block_entries"
    assert assess(inp(equity="9000", mode=Mode.REDUCE_ONLY)).kind == "block_entries"


def test_no_day_start_means_no_drawdown():
    a = assess(inp(equity="1", day_start="0"))
    assert a.kind == "none" and a.drawdown_pct == 0
    assert drawdown_pct(D(5), D(-1)) == 0
    assert drawdown_pct(D(75), D(100)) == D(25)


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        assess(inp(now=datetime(2025, 1, 1, 12)))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_utc_midnight(datetime(2025, 1, 1))


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2025, 3, 30, 14, 30, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC)),
    (datetime(2025, 3, 30, 0, 0, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC)),  # strictly after
    (datetime(2025, 3, 30, 23, 59, 59, 999999, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC)),
    (datetime(2024, 2, 28, 12, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),  # leap day
    (datetime(2024, 12, 31, 23, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),  # new year
    # other zones are converted: 01:30 at +02:00 is 23:30 UTC the day before
    (datetime(2025, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=2))), datetime(2025, 3, 31, tzinfo=UTC)),
    # 20:00 at -05:00 is 01:00 UTC the next day
    (datetime(2025, 3, 30, 20, 0, tzinfo=timezone(timedelta(hours=-5))), datetime(2025, 4, 1, tzinfo=UTC)),
])
def test_next_utc_midnight(now, expected):
    got = next_utc_midnight(now)
    assert got == expected and got.tzinfo is UTC
    assert got > now and got - now <= timedelta(days=1)
    assert (got.hour, got.minute, got.second, got.microsecond) == (0, 0, 0, 0)


def test_next_utc_midnight_every_hour_of_a_week():
    start = datetime(2025, 3, 28, tzinfo=UTC)  # spans the EU DST change (UTC has none)
    for h in range(24 * 7):
        now = start + timedelta(hours=h, minutes=17)
        assert next_utc_midnight(now) - now == timedelta(hours=23 - now.hour, minutes=60 - 17)


@pytest.mark.parametrize(("pnls", "expected"), [
    ([], 0),
    ([D(-1)], 1),
    ([D(-1), D(-2), D(-3)], 3),
    ([D(-1), D(-2), D(5), D(-3)], 2),
    ([D(1), D(-2), D(-3)], 0),
    ([D(0), D(-2)], 0),  # 0 is not a loss and ends the streak
    ([D(-2), D(0), D(-1)], 1),
    ([D("-0.01")] * 6, 6),
])
def test_consecutive_losses(pnls, expected):
    assert consecutive_losses(pnls) == expected
    assert consecutive_losses(iter(pnls)) == expected
