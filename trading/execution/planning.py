"""The execution layer's pure core: plain Python + numpy, no Django, no I/O.

- Client order ids: deterministic per (intent, slice), so a retried submission carries the
  same id and the exchange rejects the duplicate instead of filling twice.
- Retry delays: capped exponential backoff with equal jitter, never shorter than the
  exchange's Retry-After.
- Slicing: TWAP (equal slices) and VWAP (slices weighted by the intraday volume profile),
  amounts in exact lot multiples that sum to the (lot-rounded) order amount.
- SMART: market / limit / TWAP / VWAP from the order's participation in a bar's volume.
- Slippage against the arrival price, and passive limit prices on the tick grid.

Money and quantities are `Decimal` (int and str are accepted too, floats are converted through
their shortest repr: 0.1 -> Decimal("0.1")); percentages are in percent (0.2 means 0.2 %).
Times are aware UTC datetimes. Invalid arguments raise ValueError naming the argument.
"""
from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, localcontext

import numpy as np

from core.decimals import non_negative, positive, round_to_step, to_decimal
from core.enums import ExecutionStrategy, Side

__all__ = [
    "CLIENT_ORDER_ID_PATTERN",
    "MAX_SLICES",
    "SmartThresholds",
    "Slice",
    "StrategyChoice",
    "backoff_ceiling",
    "backoff_delay",
    "choose_strategy",
    "client_order_id",
    "exceeds_slippage_cap",
    "intent_hash",
    "intraday_volume_profile",
    "is_ours",
    "limit_price",
    "parse_client_order_id",
    "plan_twap",
    "plan_vwap",
    "reprice",
    "retry_delay",
    "round_down_to_step",
    "round_up_to_step",
    "slippage_pct",
]


# --------------------------------------------------------------------------- client order ids

# Binance's newClientOrderId: 1 to 36 characters of this set.
CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,36}$")
CLIENT_ORDER_ID_MAX_LEN = 36
HASH_HEX_CHARS = 26  # 104 bits of sha256: no collision in any realistic number of intents
SLICE_DIGITS = 3
MAX_SLICE_INDEX = 10**SLICE_DIGITS - 1  # 999
MAX_SLICES = MAX_SLICE_INDEX + 1  # slices 0..999: every slice of a plan gets its own id
DEFAULT_PREFIX = "qt"
# prefix + hash + "-" + slice digits must fit in 36 characters.
MAX_PREFIX_LEN = CLIENT_ORDER_ID_MAX_LEN - HASH_HEX_CHARS - 1 - SLICE_DIGITS  # 6
_PREFIX_RE = re.compile(rf"^[A-Za-z0-9_.:]{{1,{MAX_PREFIX_LEN}}}$")


def _check_prefix(prefix: str) -> None:
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValueError(f"prefix must be 1-{MAX_PREFIX_LEN} characters of [A-Za-z0-9_.:], got {prefix!r}")


def intent_hash(intent_key: str) -> str:
    """The hash part of every client order id of `intent_key` (26 lowercase hex characters)."""
    if not isinstance(intent_key, str) or not intent_key:
        raise ValueError(f"intent_key must be a non-empty string, got {intent_key!r}")
    return hashlib.sha256(intent_key.encode("utf-8")).hexdigest()[:HASH_HEX_CHARS]


def client_order_id(intent_key: str, slice_index: int = 0, *, prefix: str = DEFAULT_PREFIX) -> str:
    """The exchange client order id of slice `slice_index` of the intent `intent_key`.

    Deterministic (the same intent and slice give the same id in any process, so a resubmission
    after a timeout is recognised by the exchange as a duplicate), different for different
    intents or slices. Layout: prefix + 26 hex chars of sha256(intent_key) + "-" + the slice
    as 3 digits, e.g. "qt3f1c...9a-007": 32 characters with the default prefix, at most 36,
    always matching CLIENT_ORDER_ID_PATTERN.
    """
    _check_prefix(prefix)
    if isinstance(slice_index, bool) or not isinstance(slice_index, int):
        raise ValueError(f"slice_index must be an int, got {slice_index!r}")
    if not 0 <= slice_index <= MAX_SLICE_INDEX:
        raise ValueError(f"slice_index must be in 0..{MAX_SLICE_INDEX}, got {slice_index}")
    return f"{prefix}{intent_hash(intent_key)}-{slice_index:0{SLICE_DIGITS}d}"


def parse_client_order_id(cid: str, *, prefix: str = DEFAULT_PREFIX) -> tuple[str, int] | None:
    """(hash part, slice index) of an id made by `client_order_id` with `prefix`; None for any
    other id (orders placed by hand, by another system, or with another prefix)."""
    _check_prefix(prefix)
    if not isinstance(cid, str):
        return None
    m = re.fullmatch(rf"{re.escape(prefix)}([0-9a-f]{{{HASH_HEX_CHARS}}})-([0-9]{{{SLICE_DIGITS}}})", cid)
    if m is None:
        return None
    return m.group(1), int(m.group(2))


def is_ours(cid: str, prefix: str = DEFAULT_PREFIX) -> bool:
    """Whether `cid` was made by `client_order_id` with `prefix`."""
    return parse_client_order_id(cid, prefix=prefix) is not None


# --------------------------------------------------------------------------- retry delays


def _positive_seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return float(value)


def backoff_ceiling(attempt: int, *, base_seconds: float, cap_seconds: float) -> float:
    """min(cap, base * 2**(attempt - 1)): the largest delay `backoff_delay` returns for this
    attempt; non-decreasing in `attempt`."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an int >= 1, got {attempt!r}")
    base = _positive_seconds(base_seconds, "base_seconds")
    cap = _positive_seconds(cap_seconds, "cap_seconds")
    try:
        raw = math.ldexp(base, attempt - 1)
    except OverflowError:
        raw = math.inf
    return min(cap, raw)


def backoff_delay(
    attempt: int, *, base_seconds: float, cap_seconds: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry).

    Capped exponential backoff with "equal jitter": d = min(cap, base * 2**(attempt - 1)), the
    delay is d/2 + uniform(0, d/2). So it lies in [d/2, d]: never negative, never above the
    cap, and in [cap/2, cap] once capped; the jitter spreads clients that failed together.
    `rng` makes it reproducible (tests); default: the `random` module.
    """
    ceiling = backoff_ceiling(attempt, base_seconds=base_seconds, cap_seconds=cap_seconds)
    half = ceiling / 2
    u = (rng if rng is not None else random).random()
    return min(ceiling, half + half * u)


def retry_delay(
    attempt: int,
    *,
    base_seconds: float,
    cap_seconds: float,
    retry_after_seconds: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """`backoff_delay`, but never shorter than the exchange's Retry-After when it sent one
    (a Retry-After is honoured even above the cap: retrying earlier only earns a ban)."""
    delay = backoff_delay(attempt, base_seconds=base_seconds, cap_seconds=cap_seconds, rng=rng)
    if retry_after_seconds is None:
        return delay
    if (
        isinstance(retry_after_seconds, bool)
        or not isinstance(retry_after_seconds, int | float)
        or not math.isfinite(retry_after_seconds)
    ):
        raise ValueError(f"retry_after_seconds must be a finite number or None, got {retry_after_seconds!r}")
    return max(delay, float(retry_after_seconds))


# --------------------------------------------------------------------------- decimals


_dec = to_decimal
_positive = positive
_non_negative = non_negative


def _side(side: str) -> Side:
    try:
        return Side(side)
    except ValueError:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}") from None


def _units(x: Decimal, step: Decimal, rounding: str = ROUND_DOWN) -> int:
    """x / step as an int, toward zero (default) or up (ROUND_CEILING), exactly."""
    with localcontext() as ctx:
        ctx.prec = max(50, len(x.as_tuple().digits) + 30)
        q = x / step
        return int(q.to_integral_value(rounding=rounding))


def round_down_to_step(x: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` not above `x` in magnitude (toward zero): a quantity
    rounded to the lot size never exceeds what was asked."""
    return round_to_step(x, step, ROUND_DOWN)


def round_up_to_step(x: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of `step` not below `x` (toward +infinity)."""
    return round_to_step(x, step, ROUND_CEILING)


# --------------------------------------------------------------------------- slicing


@dataclass(frozen=True)
class Slice:
    """One child order of a sliced parent: `index` (0-based, also the client order id's
    slice), `amount` (a positive lot multiple) and `not_before` (aware UTC)."""

    index: int
    amount: Decimal
    not_before: datetime


def _utc(start: datetime) -> datetime:
    if not isinstance(start, datetime):
        raise ValueError(f"start must be a datetime, got {start!r}")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware, got naive {start!r}")
    return start.astimezone(UTC)


def _check_slices(slices: int) -> int:
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise ValueError(f"slices must be an int >= 1, got {slices!r}")
    if slices > MAX_SLICES:
        raise ValueError(f"slices must be <= {MAX_SLICES} (client order ids encode 3 digits), got {slices}")
    return slices


def _check_duration(duration_seconds: float) -> float:
    if (
        isinstance(duration_seconds, bool)
        or not isinstance(duration_seconds, int | float)
        or not math.isfinite(duration_seconds)
        or duration_seconds < 0
    ):
        raise ValueError(f"duration_seconds must be a finite number >= 0, got {duration_seconds!r}")
    return float(duration_seconds)


def _amount_units(amount: object, lot_size: object, min_amount: object) -> tuple[int, int, Decimal]:
    """(amount in lots rounded down, the smallest slice in lots, lot) after validation."""
    amount_d = _positive(amount, "amount")
    lot = _positive(lot_size, "lot_size")
    minimum = _non_negative(min_amount, "min_amount")
    total = _units(amount_d, lot)
    if total == 0:
        raise ValueError(f"amount {amount_d} is below one lot_size ({lot})")
    min_units = max(1, _units(minimum, lot, ROUND_CEILING))
    if total < min_units:
        raise ValueError(f"amount {amount_d} (rounded to the lot: {total * lot}) is below min_amount {minimum}")
    return total, min_units, lot


def _times(start: datetime, duration: float, n: int) -> list[datetime]:
    return [start + timedelta(seconds=duration * i / n) for i in range(n)]


def plan_twap(
    *,
    amount: Decimal,
    slices: int,
    duration_seconds: float,
    start: datetime,
    lot_size: Decimal,
    min_amount: Decimal = Decimal(0),
) -> list[Slice]:
    """Equal slices at start + i * duration / n.

    `amount` is first rounded down to the lot; each slice gets that divided by n, rounded down to
    the lot, and the last slice the rest, so the amounts sum to it exactly. When equal slices
    would be smaller than max(lot_size, min_amount), fewer slices are planned (spread over the
    same duration): no slice is ever below the minimum or zero. An amount below one lot or
    below min_amount raises ValueError.
    """
    n = _check_slices(slices)
    duration = _check_duration(duration_seconds)
    start = _utc(start)
    total, min_units, lot = _amount_units(amount, lot_size, min_amount)
    n = min(n, total // min_units)
    each = total // n
    units = [each] * (n - 1) + [total - each * (n - 1)]
    return [Slice(i, u * lot, t) for i, (u, t) in enumerate(zip(units, _times(start, duration, n), strict=True))]


DAY_SECONDS = 86_400
DAY_MS = DAY_SECONDS * 1000
MINUTES_PER_DAY = 1440


def intraday_volume_profile(
    open_times_ms: Sequence[int] | np.ndarray,
    volumes: Sequence[float] | np.ndarray,
    *,
    bucket_minutes: int = 60,
) -> np.ndarray:
    """The mean share of the UTC day's volume traded in each bucket of `bucket_minutes`.

    Returns 1440 / bucket_minutes non-negative floats summing to 1 (bucket 0 starts at 00:00 UTC).
    Bars are given by open time (epoch ms) and volume, and should not be longer than a bucket.
    NaN, infinite and negative volumes are ignored.

    Per day and bucket the mean volume per bar is taken (a missing bar does not make a bucket
    look quiet) and divided by that day's mean over its buckets with data (so a partial first
    or last day counts as much as a full one, and a busier day not more); these relative
    intensities are averaged over the days, and buckets never seen get the mean of the others.
    With complete days this is exactly the mean share of daily volume per bucket. Without
    any usable data (or only zero volume) the profile is uniform.
    """
    if isinstance(bucket_minutes, bool) or not isinstance(bucket_minutes, int) or bucket_minutes < 1:
        raise ValueError(f"bucket_minutes must be a positive int, got {bucket_minutes!r}")
    if MINUTES_PER_DAY % bucket_minutes:
        raise ValueError(f"bucket_minutes must divide 1440, got {bucket_minutes}")
    n_buckets = MINUTES_PER_DAY // bucket_minutes
    uniform = np.full(n_buckets, 1.0 / n_buckets)

    t = np.asarray(open_times_ms, dtype=np.int64).ravel()
    v = np.asarray(volumes, dtype=np.float64).ravel()
    if t.shape != v.shape:
        raise ValueError(f"open_times_ms and volumes differ in length: {t.size} != {v.size}")
    ok = np.isfinite(v) & (v >= 0)
    t, v = t[ok], v[ok]
    if t.size == 0:
        return uniform

    day = t // DAY_MS  # floor division: also right before 1970
    bucket = (t - day * DAY_MS) // (bucket_minutes * 60_000)
    days, day_idx = np.unique(day, return_inverse=True)
    cells = days.size * n_buckets
    key = day_idx * n_buckets + bucket
    sums = np.bincount(key, weights=v, minlength=cells).reshape(days.size, n_buckets)
    counts = np.bincount(key, minlength=cells).reshape(days.size, n_buckets)
    observed = counts > 0
    per_bar = np.divide(sums, counts, out=np.zeros_like(sums), where=observed)
    day_mean = per_bar.sum(axis=1) / observed.sum(axis=1)
    usable = day_mean > 0
    if not usable.any():
        return uniform
    intensity = per_bar[usable] / day_mean[usable, None]
    seen = observed[usable]
    n_seen = seen.sum(axis=0)
    mean = np.divide(intensity.sum(axis=0), n_seen, out=np.zeros(n_buckets), where=n_seen > 0)
    mean[n_seen == 0] = mean[n_seen > 0].mean()
    return mean / mean.sum()


def _check_profile(profile: np.ndarray) -> np.ndarray:
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or MINUTES_PER_DAY % p.size:
        raise ValueError(f"profile must be 1-D with a length dividing 1440, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ValueError("profile must be finite, non-negative and not all zero")
    return p / p.sum()


def _window_weights(p: np.ndarray, start: datetime, duration: float, n: int) -> np.ndarray:
    """The profile's volume share in each window [t_i, t_i+1), t_i = start + i * duration / n,
    integrating the (daily periodic, piecewise constant) profile exactly."""
    if duration <= 0:
        return np.ones(n)
    bucket_seconds = DAY_SECONDS / p.size
    cum = np.concatenate([[0.0], np.cumsum(p)])
    cum[-1] = 1.0
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    s0 = (start - midnight).total_seconds()
    edges = s0 + duration * np.arange(n + 1) / n

    def integral(x: np.ndarray) -> np.ndarray:  # profile mass from the first midnight to x
        days = np.floor(x / DAY_SECONDS)
        s = x - days * DAY_SECONDS
        k = np.minimum((s // bucket_seconds).astype(np.int64), p.size - 1)
        return days + cum[k] + p[k] * (s - k * bucket_seconds) / bucket_seconds

    return np.maximum(np.diff(integral(edges)), 0.0)


def plan_vwap(
    *,
    amount: Decimal,
    slices: int,
    duration_seconds: float,
    start: datetime,
    profile: np.ndarray,
    lot_size: Decimal,
    min_amount: Decimal = Decimal(0),
) -> list[Slice]:
    """Slices at start + i * duration / n, sized by the volume expected in their window.

    Slice i's weight is the profile (see `intraday_volume_profile`; any non-negative array with
    a length dividing 1440, normalized here) integrated over its window [t_i, t_i+1); with
    duration 0, or a profile that is zero over the whole span, the slices are equal. Amounts:
    `amount` rounded down to the lot, split in whole lots by weight (largest remainder: each
    slice its share rounded down, the few lots left one each to the slices rounded down the
    most), so they sum to it exactly. A slice below max(lot_size,
    min_amount) (zero included) is merged into the next one (the last into the one before);
    the remaining slices are renumbered 0..k-1 and keep their times.
    """
    n = _check_slices(slices)
    duration = _check_duration(duration_seconds)
    start = _utc(start)
    p = _check_profile(profile)
    total, min_units, lot = _amount_units(amount, lot_size, min_amount)

    w = _window_weights(p, start, duration, n)
    scale = 2**40  # integer weights: the allocation below is exact integer arithmetic
    w_int = [int(x) for x in np.rint(w / w.sum() * scale)] if w.sum() > 0 else [1] * n
    if sum(w_int) == 0:
        w_int = [1] * n
    w_total = sum(w_int)
    # Largest remainder: each slice gets the floor of its share, the few lots left over go one
    # each to the slices whose share was cut the most (ties: the later slice), so float noise
    # in the weights (4.9999.. lots) never moves a whole lot to another slice.
    units = [total * wi // w_total for wi in w_int]
    left = total - sum(units)
    by_cut = sorted(range(n), key=lambda i: (total * w_int[i] % w_total, i), reverse=True)
    for i in by_cut[:left]:
        units[i] += 1

    times = _times(start, duration, n)
    kept: list[tuple[int, datetime]] = []
    carry = 0
    for i, (u, t) in enumerate(zip(units, times, strict=True)):
        u += carry
        if u < min_units and i < n - 1:
            carry = u
            continue
        carry = 0
        if u < min_units and kept:  # the last slice is too small: into the one before
            prev_u, prev_t = kept[-1]
            kept[-1] = (prev_u + u, prev_t)
        else:
            kept.append((u, t))
    return [Slice(i, u * lot, t) for i, (u, t) in enumerate(kept)]


# --------------------------------------------------------------------------- SMART


@dataclass(frozen=True)
class SmartThresholds:
    """The SMART router's thresholds. Participation = the order's notional / one bar's quote
    volume; spreads in percent of the price."""

    # Up to 1 % of a bar's volume the order is absorbed without moving the price: one market order.
    market_max_participation: Decimal = Decimal("0.01")
    # Up to 5 %: TWAP; above: VWAP (large orders follow the market's own volume curve).
    twap_max_participation: Decimal = Decimal("0.05")
    # Each child order aims at this share of a bar's volume: slices = ceil(participation / it).
    slice_participation: Decimal = Decimal("0.01")
    # TWAP: at most 12 slices, half a bar apart (a quick working of a mid-sized order).
    twap_max_slices: int = 12
    twap_bars_per_slice: Decimal = Decimal("0.5")
    # VWAP: at most 48 slices, one bar apart.
    vwap_max_slices: int = 48
    vwap_bars_per_slice: Decimal = Decimal("1")
    # A spread wider than 0.2 % makes crossing it costlier than waiting: a small order rests
    # as a passive limit instead of a market order ...
    limit_min_spread_pct: Decimal = Decimal("0.2")
    # ... for up to one bar before the caller reprices or escalates.
    limit_bars: Decimal = Decimal("1")


# What SMART may choose (every strategy but itself).
STRATEGIES = tuple(s for s in ExecutionStrategy if s is not ExecutionStrategy.SMART)


@dataclass(frozen=True)
class StrategyChoice:
    """What SMART chose: `strategy` (one of STRATEGIES), why (with the numbers), how many
    slices and over how many seconds (market: 1 slice, 0 s; limit: 1 slice, the time it may
    rest)."""

    strategy: ExecutionStrategy
    reason: str
    slices: int
    duration_seconds: float


def _pct(x: Decimal) -> str:  # a share as percent, 3 significant digits: 0.0123 -> "1.23%"
    return f"{float(x * 100):.3g}%"


def _usd(x: Decimal) -> str:
    return f"${x:,.0f}"


def _ceil_div(x: Decimal, step: Decimal) -> int:
    return int((x / step).to_integral_value(rounding=ROUND_CEILING))


def choose_strategy(
    *,
    notional_usd: Decimal,
    bar_quote_volume_usd: Decimal | None,
    bar_seconds: int,
    spread_pct: Decimal | None = None,
    thresholds: SmartThresholds = SmartThresholds(),
) -> StrategyChoice:
    """SMART: how to execute an order of `notional_usd` given one bar's quote volume.

    participation = notional / bar volume, then
    - volume zero or unknown (None): TWAP with the most slices (nothing to size against);
    - participation <= market_max_participation: "market", or "limit" when `spread_pct` (in
      percent) is wider than limit_min_spread_pct;
    - <= twap_max_participation: "twap", ceil(participation / slice_participation) slices (at most
      twap_max_slices), twap_bars_per_slice bars per slice;
    - above: "vwap", ceil(participation / slice_participation) slices (at most vwap_max_slices),
      vwap_bars_per_slice bars per slice.
    """
    th = thresholds
    notional = _positive(notional_usd, "notional_usd")
    if isinstance(bar_seconds, bool) or not isinstance(bar_seconds, int) or bar_seconds <= 0:
        raise ValueError(f"bar_seconds must be a positive int, got {bar_seconds!r}")
    spread = None if spread_pct is None else _non_negative(spread_pct, "spread_pct")
    volume = None if bar_quote_volume_usd is None else _non_negative(bar_quote_volume_usd, "bar_quote_volume_usd")

    def twap_duration(n: int) -> float:
        return float(n * bar_seconds * th.twap_bars_per_slice)

    if volume is None or volume == 0:
        n = th.twap_max_slices
        return StrategyChoice(
            ExecutionStrategy.TWAP,
            f"bar volume unknown ({'missing' if volume is None else 'zero'}): twap in {n} slices "
            f"over {twap_duration(n):g}s for {_usd(notional)}",
            n,
            twap_duration(n),
        )

    p = notional / volume
    head = f"participation {_pct(p)} ({_usd(notional)} of {_usd(volume)} per {bar_seconds}s bar)"
    if p <= th.market_max_participation:
        if spread is not None and spread > th.limit_min_spread_pct:
            wait = float(bar_seconds * th.limit_bars)
            return StrategyChoice(
                "limit",
                f"{head} <= {_pct(th.market_max_participation)} but spread {spread:.3f}% > "
                f"{th.limit_min_spread_pct}%: passive limit, up to {wait:g}s",
                1,
                wait,
            )
        return StrategyChoice(ExecutionStrategy.MARKET, f"{head} <= {_pct(th.market_max_participation)}: market",
                              1, 0.0)
    if p <= th.twap_max_participation:
        n = max(1, min(th.twap_max_slices, _ceil_div(p, th.slice_participation)))
        return StrategyChoice(
            ExecutionStrategy.TWAP,
            f"{head} <= {_pct(th.twap_max_participation)}: twap in {n} slices over {twap_duration(n):g}s",
            n,
            twap_duration(n),
        )
    n = max(1, min(th.vwap_max_slices, _ceil_div(p, th.slice_participation)))
    duration = float(n * bar_seconds * th.vwap_bars_per_slice)
    return StrategyChoice(
        ExecutionStrategy.VWAP,
        f"{head} > {_pct(th.twap_max_participation)}: vwap in {n} slices over {duration:g}s",
        n,
        duration,
    )


# --------------------------------------------------------------------------- slippage and limit prices

HUNDRED = Decimal(100)


def slippage_pct(side: str, arrival_price: Decimal, fill_price: Decimal) -> Decimal:
    """Slippage against the arrival price in percent, positive when adverse: a buy filled above
    the arrival price, a sell below it. Negative = price improvement."""
    side = _side(side)
    arrival = _positive(arrival_price, "arrival_price")
    fill = _positive(fill_price, "fill_price")
    move = (fill - arrival) / arrival * HUNDRED
    return move if side == Side.BUY else -move


def exceeds_slippage_cap(side: str, arrival_price: Decimal, average_fill_price: Decimal, cap_pct: Decimal) -> bool:
    """Whether the adverse slippage of `average_fill_price` is strictly above `cap_pct` percent."""
    cap = _non_negative(cap_pct, "cap_pct")
    return slippage_pct(side, arrival_price, average_fill_price) > cap


def limit_price(side: str, reference_price: Decimal, offset_pct: Decimal, tick_size: Decimal) -> Decimal:
    """A passive limit price: `offset_pct` percent below the reference for a buy (rounded down to
    the tick), above it for a sell (rounded up), so rounding never makes it more aggressive.
    A buy never goes below one tick."""
    side = _side(side)
    ref = _positive(reference_price, "reference_price")
    offset = _non_negative(offset_pct, "offset_pct")
    tick = _positive(tick_size, "tick_size")
    if side == Side.BUY:
        if offset >= HUNDRED:
            raise ValueError(f"offset_pct must be < 100 for a buy, got {offset_pct!r}")
        return max(tick, round_down_to_step(ref * (1 - offset / HUNDRED), tick))
    return round_up_to_step(ref * (1 + offset / HUNDRED), tick)


def reprice(side: str, old_price: Decimal, new_reference: Decimal, offset_pct: Decimal, tick_size: Decimal) -> Decimal:
    """The price a resting passive limit should have after the reference moved to `new_reference`.

    It chases a market that runs away (a buy moves up, a sell down, to `limit_price` of the new
    reference) but does not back away from a market that comes toward it: while the old price
    is still passive (a buy strictly below the new reference, a sell strictly above) it stays.
    If the reference crossed the old price it re-anchors at `limit_price`, passive again.
    A result equal to `old_price` means: leave the order as it is.
    """
    side = _side(side)
    old = _positive(old_price, "old_price")
    ref = _positive(new_reference, "new_reference")
    new = limit_price(side, ref, offset_pct, tick_size)
    if side == Side.BUY:
        return new if new > old or old >= ref else old
    return new if new < old or old <= ref else old


# --------------------------------------------------------------------------- preflight


_CENT = Decimal("0.01")


def intent_quantities(*, amount: Decimal, size_usd: Decimal, reference_price: Decimal | None,
                      lot_size: Decimal) -> tuple[Decimal, Decimal]:
    """(amount on the lot grid, size in USD) for an intent given by one of them (the other 0).
    Without a price an amount-less intent stays at 0 (preflight then refuses it)."""
    lot = lot_size if lot_size and lot_size > 0 else Decimal("0.00000001")
    if amount == 0 and reference_price:
        amount = round_down_to_step(size_usd / reference_price, lot)
    elif amount > 0:
        amount = round_down_to_step(amount, lot)
    if size_usd == 0 and reference_price:
        size_usd = round_to_step(amount * reference_price, _CENT)
    return amount, size_usd


def preflight(*, symbol: str, side: str, reduce_only: bool, spot: bool, amount: Decimal, size_usd: Decimal,
              reference_price: Decimal | None, lot_size: Decimal, min_notional: Decimal) -> list[str]:
    """What makes an intent impossible whatever the risk policy says (no price, below one lot
    or the exchange's minimum, a short on a spot market); empty when none."""
    problems = []
    if reference_price is None:
        problems.append(f"no price known for {symbol}")
    elif amount <= 0:
        problems.append(f"size {size_usd} USD is below one lot ({lot_size}) of {symbol}")
    elif min_notional and amount * reference_price < min_notional:
        problems.append(f"order value {(amount * reference_price).quantize(_CENT)} USD is below the minimum "
                        f"{min_notional} of {symbol}")
    if spot and _side(side) is Side.SELL and not reduce_only:
        problems.append(f"{symbol} is a spot market: selling needs a long position (no shorting)")
    return problems


# --------------------------------------------------------------------------- directives


REDUCE = "reduce"


@dataclass(frozen=True)
class RebalanceDirective:
    """One portfolio balancer directive, `<buy|sell|reduce> SYMBOL SIZE_USD`. A reduce is
    reduce-only against the open position on SYMBOL, in whichever direction closes it."""

    side: Side | None  # None for a reduce: the position's exit side
    symbol: str
    size_usd: Decimal

    @property
    def reduce_only(self) -> bool:
        return self.side is None


def parse_rebalance_directive(text: object) -> RebalanceDirective:
    """ValueError naming what is wrong with the directive."""
    parts = str(text).split()
    verbs = (*(s.value for s in Side), REDUCE)
    if len(parts) != 3 or parts[0] not in verbs:
        raise ValueError(f"directive {text!r}: expected '<buy|sell|reduce> SYMBOL SIZE_USD'")
    verb, symbol, size = parts
    try:
        size_usd = positive(size, "SIZE_USD")
    except ValueError as exc:
        raise ValueError(f"directive {text!r}: {exc}") from None
    return RebalanceDirective(side=None if verb == REDUCE else Side(verb), symbol=symbol, size_usd=size_usd)
