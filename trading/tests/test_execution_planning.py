"""The execution planning core (trading/execution/planning.py): pure functions, no database.
Tables for the rules, hypothesis for the invariants."""
from __future__ import annotations

import dataclasses
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trading.execution.planning import (
    CLIENT_ORDER_ID_PATTERN,
    MAX_SLICES,
    Slice,
    SmartThresholds,
    StrategyChoice,
    backoff_ceiling,
    backoff_delay,
    choose_strategy,
    client_order_id,
    exceeds_slippage_cap,
    intent_hash,
    intraday_volume_profile,
    is_ours,
    limit_price,
    parse_client_order_id,
    plan_twap,
    plan_vwap,
    reprice,
    retry_delay,
    round_down_to_step,
    round_up_to_step,
    slippage_pct,
)

D = Decimal
START = datetime(2026, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
BINANCE_CID = re.compile(r"^[A-Za-z0-9_.:-]{1,36}$")
PROPS = settings(max_examples=150, deadline=None)

# --------------------------------------------------------------------------- client order ids


def test_client_order_id_is_pinned():
    """Stable across processes and releases: a resubmission after a restart must reuse the id."""
    assert client_order_id("intent-1") == "qt325142be9eee013b0b55da92cc-000"
    assert client_order_id("intent-1", 7) == "qt325142be9eee013b0b55da92cc-007"
    assert intent_hash("intent-1") == "325142be9eee013b0b55da92cc"


@pytest.mark.parametrize(
    ("key", "slice_index", "prefix"),
    [
        ("intent-1", 0, "qt"),
        ("intent-1", 999, "qt"),
        ("ü-ñ-中文-🚀", 5, "qt"),
        ("x" * 10_000, 1, "qt"),
        ("intent-1", 3, "abc_.:"),
        ("intent-1", 3, "Z"),
    ],
)
def test_client_order_id_table(key, slice_index, prefix):
    cid = client_order_id(key, slice_index, prefix=prefix)
    assert cid == client_order_id(key, slice_index, prefix=prefix)
    assert len(cid) <= 36 and BINANCE_CID.match(cid) and CLIENT_ORDER_ID_PATTERN.match(cid)
    assert cid.startswith(prefix) and cid.endswith(f"-{slice_index:03d}")
    assert parse_client_order_id(cid, prefix=prefix) == (intent_hash(key), slice_index)
    assert is_ours(cid, prefix=prefix)


@PROPS
@given(
    key=st.text(min_size=1, max_size=200),
    slice_index=st.integers(0, 999),
    prefix=st.from_regex(r"\A[A-Za-z0-9_.:]{1,6}\Z"),
)
def test_client_order_id_properties(key, slice_index, prefix):
    cid = client_order_id(key, slice_index, prefix=prefix)
    assert cid == client_order_id(key, slice_index, prefix=prefix)
    assert len(cid) <= 36 and BINANCE_CID.fullmatch(cid)
    assert parse_client_order_id(cid, prefix=prefix) == (intent_hash(key), slice_index)
    other = 0 if slice_index else 1
    assert client_order_id(key, other, prefix=prefix) != cid


def test_client_order_ids_unique_over_a_large_sample():
    rng = random.Random(7)
    keys = {f"{rng.getrandbits(64):x}:{i}" for i in range(50_000)}
    keys |= {f"intent-{i}" for i in range(1000)}  # near-identical keys too
    ids = [client_order_id(k, s) for k in keys for s in (0, 1, 2)]
    assert len(set(ids)) == len(ids) == 3 * len(keys)
    assert len({intent_hash(k) for k in keys}) == len(keys)


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "qt",
        "web_1234567",
        "x-123",
        "qt325142be9eee013b0b55da92cc",  # no slice
        "qt325142be9eee013b0b55da92cc-07",  # 2 digits
        "qt325142be9eee013b0b55da92cc-1000",
        "qt325142BE9EEE013B0B55DA92CC-000",  # upper case: not our hash
        "qt325142be9eee013b0b55da92c-000",  # 25 hex
        "xx325142be9eee013b0b55da92cc-000",  # another prefix
        "aqt325142be9eee013b0b55da92cc-000",
        "qt325142be9eee013b0b55da92cc-000 ",
        None,
        12345,
    ],
)
def test_foreign_ids_are_not_ours(cid):
    assert parse_client_order_id(cid) is None
    assert not is_ours(cid)


def test_prefix_must_match_to_be_ours():
    cid = client_order_id("k", 1, prefix="bot1")
    assert is_ours(cid, "bot1") and not is_ours(cid) and not is_ours(cid, "bot")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"intent_key": "k", "slice_index": -1}, "slice_index"),
        ({"intent_key": "k", "slice_index": 1000}, "slice_index"),
        ({"intent_key": "k", "slice_index": True}, "slice_index"),
        ({"intent_key": "k", "slice_index": 1.0}, "slice_index"),
        ({"intent_key": "", "slice_index": 0}, "intent_key"),
        ({"intent_key": None, "slice_index": 0}, "intent_key"),
        ({"intent_key": "k", "slice_index": 0, "prefix": "toolong"}, "prefix"),
        ({"intent_key": "k", "slice_index": 0, "prefix": ""}, "prefix"),
        ({"intent_key": "k", "slice_index": 0, "prefix": "q-t"}, "prefix"),
    ],
)
def test_client_order_id_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        client_order_id(**kwargs)


# --------------------------------------------------------------------------- retry delays


@PROPS
@given(
    attempt=st.integers(1, 3000),
    base=st.floats(0.001, 10),
    cap=st.floats(0.01, 600),
    seed=st.integers(0, 2**32),
)
def test_backoff_bounds(attempt, base, cap, seed):
    d = backoff_delay(attempt, base_seconds=base, cap_seconds=cap, rng=random.Random(seed))
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 60))
    assert 0 <= ceiling / 2 <= d <= ceiling <= cap
    if base * 2.0 ** min(attempt - 1, 60) >= cap:
        assert cap / 2 <= d <= cap


@PROPS
@given(base=st.floats(0.001, 10), cap=st.floats(0.01, 600))
def test_backoff_ceiling_is_monotone_and_capped(base, cap):
    ceilings = [backoff_ceiling(a, base_seconds=base, cap_seconds=cap) for a in range(1, 80)]
    assert all(a <= b for a, b in zip(ceilings, ceilings[1:], strict=False))
    assert ceilings[0] == min(base, cap) and ceilings[-1] == cap


class _FixedRng(random.Random):
    def __init__(self, u: float):
        super().__init__(0)
        self.u = u

    def random(self) -> float:
        return self.u


@pytest.mark.parametrize(
    ("attempt", "u", "expected"),
    [
        (1, 0.0, 0.5),  # d = 1: [0.5, 1]
        (1, 0.5, 0.75),
        (3, 0.0, 2.0),  # d = 4
        (3, 0.999, 3.998),
        (6, 0.0, 15.0),  # 32 capped at 30: [15, 30]
        (60, 0.5, 22.5),
        (10_000, 0.0, 15.0),  # no overflow
    ],
)
def test_backoff_equal_jitter_table(attempt, u, expected):
    assert backoff_delay(attempt, base_seconds=1, cap_seconds=30, rng=_FixedRng(u)) == pytest.approx(expected)


def test_backoff_is_reproducible_with_a_seeded_rng_and_jittered():
    a = [backoff_delay(5, base_seconds=1, cap_seconds=60, rng=random.Random(3)) for _ in range(3)]
    b = [backoff_delay(5, base_seconds=1, cap_seconds=60, rng=random.Random(3)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    assert len({backoff_delay(5, base_seconds=1, cap_seconds=60, rng=rng) for _ in range(20)}) > 1
    assert 8 <= backoff_delay(5, base_seconds=1, cap_seconds=60) <= 16  # default rng


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attempt": 0, "base_seconds": 1, "cap_seconds": 5}, "attempt"),
        ({"attempt": -2, "base_seconds": 1, "cap_seconds": 5}, "attempt"),
        ({"attempt": True, "base_seconds": 1, "cap_seconds": 5}, "attempt"),
        ({"attempt": 1, "base_seconds": 0, "cap_seconds": 5}, "base_seconds"),
        ({"attempt": 1, "base_seconds": float("nan"), "cap_seconds": 5}, "base_seconds"),
        ({"attempt": 1, "base_seconds": 1, "cap_seconds": -1}, "cap_seconds"),
    ],
)
def test_backoff_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        backoff_delay(**kwargs)


@pytest.mark.parametrize(
    ("retry_after", "u", "expected"),
    [
        (None, 0.0, 2.0),  # attempt 2, base 2: d = 4 -> [2, 4]
        (1.0, 0.0, 2.0),  # backoff longer than Retry-After
        (3.0, 0.0, 3.0),
        (120.0, 0.5, 120.0),  # Retry-After above the cap is honoured
        (0, 1.0, 4.0),
    ],
)
def test_retry_delay_honours_retry_after(retry_after, u, expected):
    got = retry_delay(2, base_seconds=2, cap_seconds=60, retry_after_seconds=retry_after, rng=_FixedRng(u))
    assert got == pytest.approx(expected)


def test_retry_delay_rejects_a_nonsense_retry_after():
    with pytest.raises(ValueError, match="retry_after_seconds"):
        retry_delay(1, base_seconds=1, cap_seconds=5, retry_after_seconds=float("inf"))


# --------------------------------------------------------------------------- steps


@pytest.mark.parametrize(
    ("x", "step", "down", "up"),
    [
        (D("1.2345"), D("0.01"), D("1.23"), D("1.24")),
        (D("1.23"), D("0.01"), D("1.23"), D("1.23")),
        (D("0.0009"), D("0.001"), D("0"), D("0.001")),
        (D("17"), D("5"), D("15"), D("20")),
        (D("0.3"), D("0.1"), D("0.3"), D("0.3")),
        (D("123456789.123456789"), D("0.00000001"), D("123456789.12345678"), D("123456789.12345679")),
        (D("2.5"), D("0.25"), D("2.5"), D("2.5")),
        (D("-1.25"), D("0.1"), D("-1.2"), D("-1.2")),  # toward zero down, toward +inf up
    ],
)
def test_round_to_step_table(x, step, down, up):
    assert round_down_to_step(x, step) == down
    assert round_up_to_step(x, step) == up


def test_round_to_step_rejects_a_non_positive_step():
    with pytest.raises(ValueError, match="step"):
        round_down_to_step(D("1"), D("0"))


# --------------------------------------------------------------------------- TWAP

LOTS = st.sampled_from([D("1"), D("0.1"), D("0.001"), D("0.00001"), D("0.25")])


def _check_plan(plan: list[Slice], *, amount: D, lot: D, minimum: D, slices: int, start: datetime, duration: float):
    assert 1 <= len(plan) <= slices
    assert [s.index for s in plan] == list(range(len(plan)))
    assert sum((s.amount for s in plan), D(0)) == round_down_to_step(amount, lot)
    for s in plan:
        assert isinstance(s.amount, D) and s.amount > 0 and s.amount >= minimum
        assert s.amount % lot == 0
        assert s.not_before.tzinfo is not None and s.not_before.utcoffset() == timedelta(0)
        assert start <= s.not_before <= start + timedelta(seconds=duration)
    times = [s.not_before for s in plan]
    assert times == sorted(times)


@PROPS
@given(
    lot=LOTS,
    lots=st.integers(1, 10**9),
    residual=st.sampled_from([D(0), D("0.3"), D("0.999")]),
    slices=st.integers(1, 200),
    duration=st.one_of(st.just(0.0), st.floats(0, 86_400 * 3)),
    min_lots=st.integers(0, 50),
)
def test_twap_properties(lot, lots, residual, slices, duration, min_lots):
    amount = lots * lot + residual * lot
    minimum = min_lots * lot / 2
    assume(round_down_to_step(amount, lot) >= minimum)
    plan = plan_twap(
        amount=amount, slices=slices, duration_seconds=duration, start=START, lot_size=lot, min_amount=minimum
    )
    _check_plan(plan, amount=amount, lot=lot, minimum=minimum, slices=slices, start=START, duration=duration)
    assert len({s.amount for s in plan[:-1]}) <= 1 and plan[-1].amount >= plan[0].amount
    assert plan[0].not_before == START


@pytest.mark.parametrize(
    ("amount", "slices", "lot", "minimum", "expected"),
    [
        (D("1"), 4, D("0.001"), D(0), ["0.25"] * 4),
        (D("1.0005"), 4, D("0.001"), D(0), ["0.25"] * 4),  # rounded down to the lot first
        (D("1"), 3, D("0.001"), D(0), ["0.333", "0.333", "0.334"]),  # remainder to the last
        (D("0.005"), 10, D("0.001"), D(0), ["0.001"] * 5),  # fewer slices, never zero
        (D("0.005"), 10, D("0.001"), D("0.002"), ["0.002", "0.003"]),  # min_amount
        (D("0.005"), 10, D("0.001"), D("0.0015"), ["0.002", "0.003"]),  # min rounded up to a lot
        (D("0.005"), 10, D("0.001"), D("0.005"), ["0.005"]),
        (D("7"), 1, D("1"), D(0), ["7"]),
        (D("100"), 7, D("1"), D("20"), ["20"] * 5),
        (D("99"), 7, D("1"), D("20"), ["24", "24", "24", "27"]),
    ],
)
def test_twap_table(amount, slices, lot, minimum, expected):
    plan = plan_twap(
        amount=amount, slices=slices, duration_seconds=600, start=START, lot_size=lot, min_amount=minimum
    )
    assert [s.amount for s in plan] == [D(x) for x in expected]
    n = len(expected)
    assert [s.not_before for s in plan] == [START + timedelta(seconds=600 * i / n) for i in range(n)]


def test_twap_times_are_utc_for_any_aware_start():
    start = datetime(2026, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=3)))
    plan = plan_twap(amount=D(2), slices=2, duration_seconds=60, start=start, lot_size=D(1))
    assert plan[0].not_before == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert plan[0].not_before.tzinfo == UTC and plan[1].not_before == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


def test_twap_duration_zero_puts_every_slice_at_start():
    plan = plan_twap(amount=D(3), slices=3, duration_seconds=0, start=START, lot_size=D(1))
    assert [s.not_before for s in plan] == [START] * 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"amount": D(0)}, "amount"),
        ({"amount": D(-1)}, "amount"),
        ({"amount": D("NaN")}, "amount"),
        ({"amount": D("0.0001")}, "amount"),  # below one lot
        ({"amount": D("0.002"), "min_amount": D("0.005")}, "min_amount"),
        ({"slices": 0}, "slices"),
        ({"slices": MAX_SLICES + 1}, "slices"),
        ({"slices": 2.0}, "slices"),
        ({"duration_seconds": -1}, "duration_seconds"),
        ({"duration_seconds": float("inf")}, "duration_seconds"),
        ({"start": datetime(2026, 1, 1)}, "start"),
        ({"lot_size": D(0)}, "lot_size"),
        ({"min_amount": D(-1)}, "min_amount"),
    ],
)
def test_twap_rejects(kwargs, match):
    args = {"amount": D(1), "slices": 4, "duration_seconds": 60, "start": START, "lot_size": D("0.001")}
    with pytest.raises(ValueError, match=match):
        plan_twap(**(args | kwargs))


def test_slice_is_frozen():
    s = Slice(0, D(1), START)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.amount = D(2)  # type: ignore[misc]


# --------------------------------------------------------------------------- volume profile

HOURLY = np.array([
    1.35, 1.15, 1.00, 0.85, 0.72, 0.65, 0.62, 0.66, 0.80, 0.88, 0.90, 0.92,
    1.00, 1.18, 1.40, 1.45, 1.35, 1.20, 1.10, 1.05, 1.05, 1.05, 1.10, 1.20,
])  # fmt: skip
TRUE_SHARE = HOURLY / HOURLY.sum()


def _synthetic_bars(days: int, *, seed: int = 0, bar_minutes: int = 5):
    rng = np.random.default_rng(seed)
    start_ms = int(START.timestamp() * 1000)
    t = start_ms + np.arange(days * 1440 // bar_minutes, dtype=np.int64) * bar_minutes * 60_000
    hour = (t % DAY_MS) // HOUR_MS
    day_level = rng.lognormal(0, 0.5, size=days)[(t - start_ms) // DAY_MS]  # busy and quiet days
    v = HOURLY[hour] * day_level * rng.lognormal(0, 0.3, size=t.size)
    return t, v


def test_volume_profile_recovers_a_known_profile():
    t, v = _synthetic_bars(30)
    prof = intraday_volume_profile(t, v)
    assert prof.shape == (24,) and prof.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(prof, TRUE_SHARE, rtol=0.04)
    assert prof.argmax() == TRUE_SHARE.argmax() and prof.argmin() == TRUE_SHARE.argmin()


def test_volume_profile_with_partial_days_and_gaps():
    t, v = _synthetic_bars(30, seed=1)
    keep = (t >= t[0] + 17 * HOUR_MS) & (t < t[-1] - 9 * HOUR_MS)  # first and last day partial
    keep &= np.random.default_rng(2).random(t.size) > 0.2  # 20 % of bars missing
    prof = intraday_volume_profile(t[keep], v[keep])
    np.testing.assert_allclose(prof, TRUE_SHARE, rtol=0.05)


def test_volume_profile_ignores_nan_and_negative_volumes():
    t, v = _synthetic_bars(20, seed=3)
    clean = intraday_volume_profile(t, v)
    dirty = v.copy()
    bad = np.random.default_rng(4).random(v.size) < 0.1
    extra_t = np.concatenate([t, t[bad]])
    extra_v = np.concatenate([v, np.where(np.arange(bad.sum()) % 2, np.nan, -1e9)])
    dirty[bad] = np.nan
    np.testing.assert_allclose(intraday_volume_profile(t, dirty), TRUE_SHARE, rtol=0.06)
    np.testing.assert_allclose(intraday_volume_profile(extra_t, extra_v), clean)


def test_volume_profile_fills_unseen_buckets_with_the_mean_of_the_others():
    start_ms = int(START.timestamp() * 1000)
    t = np.array([start_ms + h * HOUR_MS for h in (0, 1, 2)], dtype=np.int64)  # 3 hours of one day
    prof = intraday_volume_profile(t, [1.0, 2.0, 3.0])
    weights = np.array([0.5, 1.0, 1.5] + [1.0] * 21)  # relative to the day's mean (2)
    np.testing.assert_allclose(prof, weights / weights.sum())


@pytest.mark.parametrize(
    ("times", "vols"),
    [
        ([], []),
        ([0, HOUR_MS], [np.nan, -5.0]),
        ([0, HOUR_MS], [0.0, 0.0]),
    ],
)
def test_volume_profile_without_usable_data_is_uniform(times, vols):
    np.testing.assert_allclose(intraday_volume_profile(times, vols), np.full(24, 1 / 24))


@pytest.mark.parametrize("bucket_minutes", [5, 15, 30, 60, 240, 1440])
def test_volume_profile_bucket_sizes(bucket_minutes):
    t, v = _synthetic_bars(10, seed=5)
    prof = intraday_volume_profile(t, v, bucket_minutes=bucket_minutes)
    assert prof.shape == (1440 // bucket_minutes,)
    assert prof.sum() == pytest.approx(1.0) and (prof >= 0).all()
    if bucket_minutes >= 60:
        per = bucket_minutes // 60
        np.testing.assert_allclose(prof, TRUE_SHARE.reshape(-1, per).sum(axis=1), rtol=0.08)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bucket_minutes": 7}, "bucket_minutes"),
        ({"bucket_minutes": 0}, "bucket_minutes"),
        ({"volumes": [1.0]}, "length"),
    ],
)
def test_volume_profile_rejects(kwargs, match):
    args = {"open_times_ms": [0, 1], "volumes": [1.0, 2.0]}
    with pytest.raises(ValueError, match=match):
        intraday_volume_profile(**(args | kwargs))


# --------------------------------------------------------------------------- VWAP


@PROPS
@given(
    lot=LOTS,
    lots=st.integers(1, 10**9),
    slices=st.integers(1, 120),
    duration=st.one_of(st.just(0.0), st.floats(0, 86_400 * 3)),
    min_lots=st.integers(0, 50),
    weights=st.lists(st.floats(0, 10), min_size=24, max_size=24).filter(lambda w: sum(w) > 0),
    offset_s=st.integers(0, 86_399),
)
def test_vwap_properties(lot, lots, slices, duration, min_lots, weights, offset_s):
    amount = lots * lot
    minimum = min_lots * lot / 3
    assume(amount >= minimum)
    start = START + timedelta(seconds=offset_s)
    plan = plan_vwap(
        amount=amount,
        slices=slices,
        duration_seconds=duration,
        start=start,
        profile=np.array(weights),
        lot_size=lot,
        min_amount=minimum,
    )
    _check_plan(plan, amount=amount, lot=lot, minimum=minimum, slices=slices, start=start, duration=duration)


def test_vwap_puts_more_into_high_volume_buckets():
    profile = np.ones(24)
    profile[14] = 5.0
    plan = plan_vwap(
        amount=D(10), slices=6, duration_seconds=6 * 3600, start=START.replace(hour=11),
        profile=profile, lot_size=D("0.01"),
    )
    by_hour = {s.not_before.hour: s.amount for s in plan}
    assert max(by_hour, key=by_hour.get) == 14
    assert by_hour[14] == D("5.00")  # 5 / 10 of the window's volume
    assert by_hour[11] == by_hour[12] == by_hour[13] == by_hour[15] == D("1.00")


def test_vwap_follows_a_recovered_profile():
    t, v = _synthetic_bars(30)
    prof = intraday_volume_profile(t, v)
    plan = plan_vwap(
        amount=D(1000), slices=24, duration_seconds=86_400, start=START, profile=prof, lot_size=D("0.001")
    )
    amounts = np.array([float(s.amount) for s in plan])
    assert np.corrcoef(amounts, HOURLY)[0, 1] > 0.98
    assert amounts.argmax() == HOURLY.argmax() and amounts.argmin() == HOURLY.argmin()


def test_vwap_integrates_the_profile_over_each_window():
    profile = np.array([1.0] * 12 + [3.0] * 12)  # the afternoon trades 3x the morning
    # two 2h windows from 11:00: [11, 13) = 1 + 3, [13, 15) = 3 + 3
    plan = plan_vwap(
        amount=D(10), slices=2, duration_seconds=4 * 3600, start=START.replace(hour=11),
        profile=profile, lot_size=D("0.01"),
    )
    assert [s.amount for s in plan] == [D("4.00"), D("6.00")]
    # windows spanning midnight wrap around to the next UTC day
    plan = plan_vwap(
        amount=D(8), slices=2, duration_seconds=2 * 3600, start=START.replace(hour=23),
        profile=profile, lot_size=D("0.01"),
    )
    assert [s.amount for s in plan] == [D("6.00"), D("2.00")]


def test_vwap_without_duration_or_volume_is_equal():
    kwargs = {"amount": D(9), "slices": 3, "start": START, "lot_size": D(1)}
    assert [s.amount for s in plan_vwap(duration_seconds=0, profile=np.ones(24), **kwargs)] == [D(3)] * 3
    dead = np.ones(24)
    dead[:6] = 0.0  # no volume at all during the plan's span
    plan = plan_vwap(duration_seconds=3 * 3600, profile=dead, **kwargs)
    assert [s.amount for s in plan] == [D(3)] * 3


def test_vwap_merges_tiny_slices_into_the_next():
    profile = np.ones(24)
    profile[[0, 2]] = 0.0  # no volume at 00-01 and 02-03 UTC
    plan = plan_vwap(
        amount=D(10), slices=4, duration_seconds=4 * 3600, start=START, profile=profile, lot_size=D(1)
    )
    assert [(s.index, s.amount, s.not_before.hour) for s in plan] == [(0, D(5), 1), (1, D(5), 3)]
    # the last slice too small: merged into the one before
    profile = np.ones(24)
    profile[3] = 0.01
    plan = plan_vwap(
        amount=D(10), slices=4, duration_seconds=4 * 3600, start=START, profile=profile,
        lot_size=D(1), min_amount=D(2),
    )
    assert [s.amount for s in plan] == [D(3), D(3), D(4)] and plan[-1].not_before.hour == 2


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        (np.ones(7), "profile"),
        (np.ones((2, 12)), "profile"),
        (np.zeros(24), "profile"),
        (np.array([-1.0] + [1.0] * 23), "profile"),
        (np.array([np.nan] + [1.0] * 23), "profile"),
    ],
)
def test_vwap_rejects_bad_profiles(profile, match):
    with pytest.raises(ValueError, match=match):
        plan_vwap(amount=D(1), slices=2, duration_seconds=60, start=START, profile=profile, lot_size=D("0.1"))


def test_vwap_rejects_like_twap():
    with pytest.raises(ValueError, match="amount"):
        plan_vwap(amount=D(0), slices=2, duration_seconds=60, start=START, profile=np.ones(24), lot_size=D(1))
    with pytest.raises(ValueError, match="start"):
        plan_vwap(
            amount=D(1), slices=2, duration_seconds=60, start=datetime(2026, 1, 1), profile=np.ones(24), lot_size=D(1)
        )


# --------------------------------------------------------------------------- SMART

VOL = D(1_000_000)


@pytest.mark.parametrize(
    ("notional", "spread", "strategy", "slices", "duration"),
    [
        (D("1"), None, "market", 1, 0.0),
        (D("10000"), None, "market", 1, 0.0),  # exactly 1 %: still market
        (D("10000.01"), None, "twap", 2, 300.0),  # just above: 2 slices, half a bar each
        (D("30000"), None, "twap", 3, 450.0),
        (D("50000"), None, "twap", 5, 750.0),  # exactly 5 %: still twap
        (D("50000.01"), None, "vwap", 6, 1800.0),  # just above: vwap, one bar per slice
        (D("300000"), None, "vwap", 30, 9000.0),
        (D("480000"), None, "vwap", 48, 14400.0),
        (D("5000000"), None, "vwap", 48, 14400.0),  # capped at 48 slices
        (D("5000"), D("0.3"), "limit", 1, 300.0),  # wide spread, small order: passive
        (D("10000"), D("0.21"), "limit", 1, 300.0),
        (D("5000"), D("0.2"), "market", 1, 0.0),  # exactly 0.2 %: not wide
        (D("5000"), D("0.05"), "market", 1, 0.0),
        (D("30000"), D("0.5"), "twap", 3, 450.0),  # wide spread only matters for small orders
    ],
)
def test_choose_strategy_boundaries(notional, spread, strategy, slices, duration):
    choice = choose_strategy(notional_usd=notional, bar_quote_volume_usd=VOL, bar_seconds=300, spread_pct=spread)
    assert (choice.strategy, choice.slices, choice.duration_seconds) == (strategy, slices, duration)
    assert "participation" in choice.reason and "$1,000,000" in choice.reason


@pytest.mark.parametrize("volume", [None, D(0)])
def test_choose_strategy_without_volume(volume):
    choice = choose_strategy(notional_usd=D(500), bar_quote_volume_usd=volume, bar_seconds=60)
    assert (choice.strategy, choice.slices, choice.duration_seconds) == ("twap", 12, 360.0)
    assert "volume unknown" in choice.reason


def test_choose_strategy_reasons_name_the_numbers():
    twap = choose_strategy(notional_usd=D(30000), bar_quote_volume_usd=VOL, bar_seconds=300)
    assert "3%" in twap.reason and "5%" in twap.reason and "3 slices" in twap.reason and "450s" in twap.reason
    limit = choose_strategy(notional_usd=D(100), bar_quote_volume_usd=VOL, bar_seconds=300, spread_pct=D("0.35"))
    assert "0.01%" in limit.reason and "0.350%" in limit.reason and "0.2%" in limit.reason


def test_choose_strategy_with_custom_thresholds():
    th = SmartThresholds(twap_max_participation=D("0.5"))
    choice = choose_strategy(notional_usd=D(200_000), bar_quote_volume_usd=VOL, bar_seconds=60, thresholds=th)
    assert (choice.strategy, choice.slices, choice.duration_seconds) == ("twap", 12, 360.0)  # capped at 12
    with pytest.raises(dataclasses.FrozenInstanceError):
        th.twap_max_slices = 3  # type: ignore[misc]
    assert isinstance(choice, StrategyChoice)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"notional_usd": D(0)}, "notional_usd"),
        ({"notional_usd": D(-5)}, "notional_usd"),
        ({"bar_seconds": 0}, "bar_seconds"),
        ({"bar_quote_volume_usd": D(-1)}, "bar_quote_volume_usd"),
        ({"spread_pct": D(-1)}, "spread_pct"),
    ],
)
def test_choose_strategy_rejects(kwargs, match):
    args = {"notional_usd": D(100), "bar_quote_volume_usd": VOL, "bar_seconds": 300}
    with pytest.raises(ValueError, match=match):
        choose_strategy(**(args | kwargs))


# --------------------------------------------------------------------------- slippage and limit prices


@pytest.mark.parametrize(
    ("side", "arrival", "fill", "expected"),
    [
        ("buy", D(100), D(101), D(1)),  # paid more: adverse
        ("buy", D(100), D(99), D(-1)),
        ("sell", D(100), D(99), D(1)),  # received less: adverse
        ("sell", D(100), D(101), D(-1)),
        ("buy", D(100), D(100), D(0)),
        ("sell", D("0.5"), D("0.49"), D(2)),
    ],
)
def test_slippage_sign_by_side(side, arrival, fill, expected):
    assert slippage_pct(side, arrival, fill) == expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("buy", D(0), D(1)), "arrival_price"),
        (("buy", D(-1), D(1)), "arrival_price"),
        (("sell", D(1), D(0)), "fill_price"),
        (("long", D(1), D(1)), "side"),
    ],
)
def test_slippage_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        slippage_pct(*args)


@pytest.mark.parametrize(
    ("side", "fill", "cap", "exceeded"),
    [
        ("buy", D("100.5"), D("0.5"), False),  # at the cap: fine
        ("buy", D("100.51"), D("0.5"), True),
        ("buy", D("90"), D("0.5"), False),  # improvement never exceeds
        ("sell", D("99.4"), D("0.5"), True),
        ("sell", D("110"), D("0"), False),
    ],
)
def test_exceeds_slippage_cap(side, fill, cap, exceeded):
    assert exceeds_slippage_cap(side, D(100), fill, cap) is exceeded


@pytest.mark.parametrize(
    ("side", "ref", "offset", "tick", "expected"),
    [
        ("buy", D("100.037"), D("0.1"), D("0.01"), D("99.93")),  # 99.936963 down
        ("sell", D("100.037"), D("0.1"), D("0.01"), D("100.14")),  # 100.137037 up
        ("buy", D("100.037"), D(0), D("0.01"), D("100.03")),
        ("sell", D("100.031"), D(0), D("0.01"), D("100.04")),
        ("buy", D("100"), D(0), D("0.5"), D("100")),
        ("buy", D("0.0004"), D(10), D("0.001"), D("0.001")),  # never below one tick
    ],
)
def test_limit_price_is_passive(side, ref, offset, tick, expected):
    assert limit_price(side, ref, offset, tick) == expected


@PROPS
@given(
    side=st.sampled_from(["buy", "sell"]),
    ref_ticks=st.integers(10, 10**8),
    frac=st.integers(0, 99),
    offset_bp=st.integers(0, 500),
    tick=st.sampled_from([D("0.01"), D("0.1"), D("0.0001"), D(5)]),
)
def test_limit_price_properties(side, ref_ticks, frac, offset_bp, tick):
    ref = ref_ticks * tick + frac * tick / 100
    price = limit_price(side, ref, D(offset_bp) / 100, tick)
    assert price % tick == 0 and price > 0
    assert price <= ref if side == "buy" else price >= ref


@pytest.mark.parametrize(
    ("side", "old", "new_ref", "expected"),
    [
        ("buy", D("99.90"), D("101"), D("100.89")),  # market ran up: chase
        ("buy", D("99.90"), D("100.5"), D("100.39")),
        ("buy", D("99.90"), D("99.95"), D("99.90")),  # came toward us, still passive: stay
        ("buy", D("99.90"), D("99.90"), D("99.80")),  # crossed: re-anchor below
        ("buy", D("99.90"), D("95"), D("94.90")),
        ("sell", D("100.10"), D("99"), D("99.10")),  # market fell: chase down
        ("sell", D("100.10"), D("100.05"), D("100.10")),  # stay
        ("sell", D("100.10"), D("100.20"), D("100.31")),  # crossed: re-anchor above
    ],
)
def test_reprice(side, old, new_ref, expected):
    assert reprice(side, old, new_ref, D("0.1"), D("0.01")) == expected


def test_limit_price_rejects():
    with pytest.raises(ValueError, match="reference_price"):
        limit_price("buy", D(0), D("0.1"), D("0.01"))
    with pytest.raises(ValueError, match="tick_size"):
        limit_price("buy", D(1), D("0.1"), D(0))
    with pytest.raises(ValueError, match="offset_pct"):
        limit_price("buy", D(1), D(100), D("0.01"))
    with pytest.raises(ValueError, match="old_price"):
        reprice("sell", D(0), D(1), D("0.1"), D("0.01"))
