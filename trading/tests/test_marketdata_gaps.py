"""Pure pieces of the candle import: calendar-gap classification, tick/lot inference, symbol parsing."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.enums import MarketType
from trading.marketdata import timeframes
from trading.marketdata.gaps import (
    HOLIDAY_WEEKEND,
    UNEXPECTED,
    WEEKEND,
    classify_gap,
    is_calendar_gap,
)
from trading.marketdata.importers import infer_increment, parse_unified_symbol


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# 2026-01-02 is a Friday; 2026-04-03 is Good Friday, 2026-04-06 Easter Monday.
@pytest.mark.parametrize(("first", "last", "tf", "kind"), [
    # FX: closes Friday 22:00 UTC, the first bar back is Sunday 22:00 (48 one-hour bars missing)
    ("2026-01-02 22:00", "2026-01-04 21:00", "1h", WEEKEND),
    ("2026-01-02 21:00", "2026-01-04 20:55", "5m", WEEKEND),  # summer time: an hour earlier
    ("2026-01-03 00:00", "2026-01-04 16:00", "4h", WEEKEND),  # 4h bars: the Friday 20:00 bar exists
    # daily bars: Saturday and Sunday missing
    ("2026-01-03 00:00", "2026-01-04 00:00", "1d", WEEKEND),
    # US equities: Friday 20:00 close, Monday 14:30 open
    ("2026-01-02 20:00", "2026-01-05 14:15", "15m", WEEKEND),
    # equities on Good Friday: Thursday close to Monday open
    ("2026-04-02 20:00", "2026-04-06 13:00", "1h", HOLIDAY_WEEKEND),
    # FX closed on Good Friday: Thursday close to Sunday evening
    ("2026-04-02 22:00", "2026-04-05 21:00", "1h", HOLIDAY_WEEKEND),
    # a Monday holiday: back on Monday evening or on Tuesday
    ("2026-01-02 22:00", "2026-01-05 21:00", "1h", HOLIDAY_WEEKEND),
    ("2026-01-02 20:00", "2026-01-06 13:00", "1h", HOLIDAY_WEEKEND),
    # an early close on the Friday (Christmas Eve style) counts as the adjoining day
    ("2026-01-02 14:00", "2026-01-04 21:00", "1h", HOLIDAY_WEEKEND),
    # both sides: Good Friday and Easter Monday
    ("2026-04-02 20:00", "2026-04-07 06:00", "1h", HOLIDAY_WEEKEND),
    # not the calendar
    ("2026-01-07 10:00", "2026-01-07 12:00", "1h", UNEXPECTED),  # Wednesday outage
    ("2026-01-03 03:00", "2026-01-03 05:00", "1h", UNEXPECTED),  # crypto: a Saturday hole
    ("2026-01-01 14:00", "2026-01-04 21:00", "1h", UNEXPECTED),  # stops Thursday afternoon
    ("2026-01-02 22:00", "2026-01-11 21:00", "1h", UNEXPECTED),  # two weekends and a week
    ("2026-04-01 22:00", "2026-04-05 21:00", "1h", UNEXPECTED),  # from Wednesday night
    ("2026-04-02 20:00", "2026-04-07 15:00", "1h", UNEXPECTED),  # till Tuesday afternoon
    ("2026-01-04 12:00", "2026-01-04 20:00", "1h", UNEXPECTED),  # Sunday only
    ("2026-01-05 00:00", "2026-01-05 03:00", "1h", UNEXPECTED),  # Monday night
])
def test_classify_gap(first, last, tf, kind):
    assert classify_gap(utc(first), utc(last), tf) == kind
    # the importer passes epoch milliseconds: same answer
    assert classify_gap(timeframes.to_ms(utc(first)), timeframes.to_ms(utc(last)), tf) == kind
    assert is_calendar_gap(utc(first), utc(last), tf) == (kind != UNEXPECTED)


@pytest.mark.parametrize(("first", "last", "tf", "message"), [
    (datetime(2026, 1, 2, 22), utc("2026-01-04 21:00"), "1h", "first_missing .* timezone-aware"),
    (utc("2026-01-02 22:00"), "2026-01-04", "1h", "last_missing must be a datetime or epoch milliseconds"),
    (utc("2026-01-04 22:00"), utc("2026-01-02 21:00"), "1h", "last_missing .* is before first_missing"),
    (utc("2026-01-02 22:00"), utc("2026-01-04 21:00"), "7m", "timeframe: unknown timeframe '7m'"),
])
def test_classify_gap_refuses_bad_input(first, last, tf, message):
    with pytest.raises(ValueError, match=message):
        classify_gap(first, last, tf)


starts = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@given(start=starts, hours=st.integers(0, 24 * 10), weeks=st.integers(-100, 100))
def test_classification_repeats_every_week(start, hours, weeks):
    start = start.replace(minute=0, second=0, microsecond=0)
    last = start + timedelta(hours=hours)
    shift = timedelta(weeks=weeks)
    assert classify_gap(start, last, "1h") == classify_gap(start + shift, last + shift, "1h")


@given(start=starts, hours=st.integers(116, 24 * 60))
def test_a_gap_longer_than_a_long_weekend_is_unexpected(start, hours):
    # the longest calendar gap runs from Thursday 20:00 until Tuesday 15:00: 115 hours
    start = start.replace(minute=0, second=0, microsecond=0)
    assert classify_gap(start, start + timedelta(hours=hours), "1h") == UNEXPECTED


@given(start=starts, hours=st.integers(0, 24 * 3))
def test_a_gap_starting_monday_to_thursday_afternoon_is_unexpected(start, hours):
    start = start.replace(minute=0, second=0, microsecond=0)
    monday = start - timedelta(days=start.weekday(), hours=start.hour)
    start = monday + (start - monday) % timedelta(hours=3 * 24 + 20)  # Monday 00:00 .. Thursday 19:00
    assert classify_gap(start, start + timedelta(hours=hours), "1h") == UNEXPECTED


@pytest.mark.parametrize(("values", "increment", "samples"), [
    ([93500.1, 93620, 93480.5], "0.1", 3),  # the README's example
    ([1.08345, 1.0835, 1.083], "0.00001", 3),  # FX pips
    ([12.5, 9.8, 0, 3.125], "0.001", 3),  # zero volumes say nothing
    ([93500, 93600, 93700], "1", 3),  # round numbers: no coarser than 1
    ([0.30000000000000004, 0.1], "0.1", 2),  # float noise is rounded away
    ([0.000000001], "0.00000001", 1),  # below the floor
    ([1.23456789123], "0.00000001", 1),
    ([1e22, 3], "1", 2),  # a huge volume does not overflow the rounding
    ([0, 0], "0.00000001", 0),  # nothing to infer from: the finest
    ([], "0.00000001", 0),
])
def test_infer_increment(values, increment, samples):
    got = infer_increment(values)
    assert (got.value, got.samples) == (Decimal(increment), samples)


def test_infer_increment_refuses_non_finite_values():
    with pytest.raises(ValueError, match="finite"):
        infer_increment([1.0, float("nan")])


@given(units=st.lists(st.integers(1, 10**7), min_size=1, max_size=30), exponent=st.integers(-8, 0))
def test_inferred_increment_divides_every_value_and_is_the_largest(units, exponent):
    step = Decimal(1).scaleb(exponent)
    values = [float(u * step) for u in units]
    got = infer_increment(values).value
    assert got >= step  # at least as coarse as the grid the values were drawn on
    assert all((Decimal(repr(v)) / got) % 1 == 0 for v in values)
    if got < 1:  # and no coarser power of ten divides them all
        assert not all((Decimal(repr(v)) / (got * 10)) % 1 == 0 for v in values)


@pytest.mark.parametrize(("text", "base", "quote", "settle", "market_type"), [
    ("BTC/USDT", "BTC", "USDT", "", MarketType.SPOT),
    ("BTC/USDT:USDT", "BTC", "USDT", "USDT", MarketType.PERPETUAL),
    ("1000PEPE/USDT:USDT", "1000PEPE", "USDT", "USDT", MarketType.PERPETUAL),
    ("EUR/USD", "EUR", "USD", "", MarketType.SPOT),
])
def test_parse_unified_symbol(text, base, quote, settle, market_type):
    parsed = parse_unified_symbol(text)
    assert (parsed.symbol, parsed.base, parsed.quote, parsed.settle, parsed.market_type) == (
        text, base, quote, settle, market_type)


@pytest.mark.parametrize("text", ["BTCUSDT", "btc/usdt", "BTC-USDT", "BTC/USDT:", "B/USDT", "BTC/USDT:USDT:X", ""])
def test_parse_unified_symbol_refuses_what_is_not_one(text):
    with pytest.raises(ValueError, match="is not a unified symbol like BTC/USDT"):
        parse_unified_symbol(text)
