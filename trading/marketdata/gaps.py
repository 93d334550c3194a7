"""Telling a calendar gap (the market was closed) from an unexpected one (data is missing).

FX trades from Sunday evening to Friday evening UTC (it closes at 17:00 New York: 21:00 or
22:00 UTC), equities from Monday to Friday; their candle files therefore have no bars over the
weekend. An importer that reported those as missing data would cry wolf every week, and a
backtester that treated them as missing data would refuse or distort every FX or equity run.

`classify_gap` decides from the gap's position in the UTC week alone (pure, no calendar data):

- ``WEEKEND``: the gap starts on Friday from 20:00 UTC (the earliest of the FX and US equity
  closes, summer time) up to Saturday 00:00, and trading resumes from Sunday 00:00 to Monday
  15:00 UTC (FX reopens Sunday 21:00-22:00 UTC, US equities Monday 13:30-14:30 UTC, daily
  bars Monday 00:00).
- ``HOLIDAY_WEEKEND``: that weekend close, extended by at most one day on either side (from
  Thursday 20:00 UTC, resuming by Tuesday 15:00): a holiday that adjoins the weekend (Good Friday,
  Easter Monday, a Christmas that falls on a Friday or a Monday).
- ``UNEXPECTED``: anything else, mid-week holidays included: without an exchange calendar a
  closed Wednesday cannot be told from an outage, so it is reported (and a backtest sees it)
  as missing data.

The shape alone decides: a 24/7 crypto feed that stops for exactly a weekend is called a
calendar gap too.

For the backtester: call ``is_calendar_gap(first_missing, last_missing, timeframe)`` for each
run of missing bars; a calendar gap is a closed market (skip it: no bars, no fills, funding and
clock simply jump over it), an unexpected gap is missing data (refuse or report it).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from trading.exchanges.errors import BadTimeframe
from trading.marketdata import timeframes

WEEKEND = "weekend"
HOLIDAY_WEEKEND = "holiday weekend"
UNEXPECTED = "unexpected"
CALENDAR_KINDS = frozenset({WEEKEND, HOLIDAY_WEEKEND})

FRIDAY = 4  # datetime.weekday()
# The weekend close may begin this long after Friday 00:00 UTC (20:00: US equities in summer time).
EARLIEST_CLOSE = timedelta(hours=20)
# ... and trading resumes by this long after Monday 00:00 UTC (15:00: after US equities open).
LATEST_OPEN = timedelta(hours=15)
DAY = timedelta(days=1)


def _as_datetime(value: datetime | int, name: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} {value.isoformat()} must be timezone-aware (UTC)")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timeframes.to_datetime(value)
    raise ValueError(f"{name} must be a datetime or epoch milliseconds, got {type(value).__name__} {value!r}")


def classify_gap(first_missing: datetime | int, last_missing: datetime | int, timeframe: str) -> str:
    """WEEKEND, HOLIDAY_WEEKEND or UNEXPECTED for a run of missing bars.

    `first_missing` and `last_missing` are the open times of the first and the last missing bar
    (aware datetimes or epoch milliseconds, as the importer reports them); the market resumes
    with the bar after `last_missing`. Raises ValueError naming the argument for a naive time,
    an unknown timeframe or a run that ends before it starts.
    """
    start = _as_datetime(first_missing, "first_missing")
    last = _as_datetime(last_missing, "last_missing")
    if last < start:
        raise ValueError(f"last_missing {last.isoformat()} is before first_missing {start.isoformat()}")
    try:
        resume = last + timedelta(seconds=timeframes.seconds(timeframe))
    except BadTimeframe as exc:
        raise ValueError(f"timeframe: {exc}") from None
    # Friday 00:00 UTC of the week the gap starts in (a gap starting on the weekend itself
    # belongs to the Friday before it).
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
    friday = day0 - timedelta(days=(day0.weekday() - FRIDAY) % 7)
    saturday, monday = friday + DAY, friday + 3 * DAY

    if friday + EARLIEST_CLOSE <= start <= saturday and saturday + DAY <= resume < monday + LATEST_OPEN:
        return WEEKEND
    # The weekend close plus one adjoining day at most on each side. A start on Thursday lies
    # before "friday" as computed above, so look at the next weekend too.
    for fri in (friday, friday + 7 * DAY):
        sat, mon = fri + DAY, fri + 3 * DAY
        if fri - DAY + EARLIEST_CLOSE <= start <= sat and sat + DAY <= resume < mon + DAY + LATEST_OPEN:
            return HOLIDAY_WEEKEND
    return UNEXPECTED


def is_calendar_gap(first_missing: datetime | int, last_missing: datetime | int, timeframe: str) -> bool:
    """True when the market was closed (a weekend, or one with an adjoining holiday)."""
    return classify_gap(first_missing, last_missing, timeframe) in CALENDAR_KINDS
