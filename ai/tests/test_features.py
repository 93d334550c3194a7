"""Feature layer: no lookahead (hypothesis), each indicator against a direct computation, labels
and the neutral band, purged splits (hypothesis), the feature hash, the validators, the dataset
and the inference rows, and one dataset built from a seeded market in the database."""
from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ai.features import compute, dataset
from ai.features.compute import (
    DEFAULT_PARAMS,
    INFERENCE_BARS,
    BadBars,
    FeatureParams,
    FeatureValueError,
    compute_symbol_features,
    compute_universe_features,
    feature_names,
    feature_set_hash,
    insufficient_history,
    min_history_bars,
    validate_features,
)
from ai.features.dataset import build_dataset, latest_rows
from ai.features.labels import DEFAULT_BAND, direction_labels, forward_log_return, labels_from_returns, neutral_band
from ai.features.splits import SplitError, train_validation_split, walk_forward

T0 = 1767225600000  # 2026-01-01 00:00 UTC
BAR = 300_000
NAMES = feature_names()
SYM_NAMES = compute.symbol_feature_names()
COL = {name: i for i, name in enumerate(NAMES)}
MIN_BARS = min_history_bars()  # 111 with the defaults


def make_bars(n, seed=0, *, vol=0.004, price=100.0, start=T0, volume="random", times=None):
    """Valid OHLCV: open = previous close, high/low outside both, volume >= 0."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.r_[price, close[:-1]][:n]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    if volume == "random":
        vol_col = rng.lognormal(6, 1, n)
    elif volume == "zero":
        vol_col = np.zeros(n)
    else:
        vol_col = np.full(n, 1000.0)
    t = start + BAR * np.arange(n) if times is None else np.asarray(times, dtype=float)
    return np.column_stack([t, open_, high, low, close, vol_col])


def bars_from_close(close, *, volume=None, spread=0.0):
    close = np.asarray(close, dtype=float)
    n = len(close)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    vol = np.full(n, 1000.0) if volume is None else np.asarray(volume, dtype=float)
    return np.column_stack([T0 + BAR * np.arange(n), open_, high, low, close, vol])


# --- no lookahead ------------------------------------------------------------------------------

series_st = st.fixed_dictionaries({
    "n": st.integers(1, 280),
    "seed": st.integers(0, 2**32 - 1),
    "vol": st.sampled_from([0.0, 1e-4, 0.004, 0.05]),  # 0: a flat market (ties, zero widths)
    "volume": st.sampled_from(["random", "constant", "zero"]),
})
mutation_st = st.fixed_dictionaries({
    "kind": st.sampled_from(["truncate", "resample", "garbage"]),
    "seed": st.integers(0, 2**32 - 1),
    "extra": st.integers(0, 150),  # bars after the cut in the changed future
})


def mutate_after(bars, cut_ms, mutation):
    """The same bars up to cut_ms; after it: nothing, another valid path of another length, or
    garbage values (NaN, inf, zero and negative prices) at the same times."""
    keep = bars[bars[:, 0] <= cut_ms]
    kind, rng = mutation["kind"], np.random.default_rng(mutation["seed"])
    if kind == "truncate":
        return keep.copy()
    if kind == "resample":
        start = cut_ms + BAR * int(rng.integers(1, 4))
        future = make_bars(mutation["extra"], mutation["seed"], vol=0.03, price=float(rng.uniform(1, 1000)),
                           start=start)
        return np.vstack([keep, future])
    later = bars[bars[:, 0] > cut_ms].copy()
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, 1e-300, 7.0])
    later[:, 1:] = rng.choice(pool, size=later[:, 1:].shape)
    return np.vstack([keep, later])


def symbol_prefix_unchanged(features_fn, bars, bars_changed, cut_row) -> bool:
    _, a = features_fn(bars)
    _, b = features_fn(bars_changed)
    return np.array_equal(a[:cut_row + 1], b[:cut_row + 1], equal_nan=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series=series_st, mutation=mutation_st, data=st.data())
def test_symbol_feature_row_at_t_ignores_every_later_bar(series, mutation, data):
    bars = make_bars(series["n"], series["seed"], vol=series["vol"], volume=series["volume"])
    t = data.draw(st.integers(0, series["n"] - 1), label="t")
    changed = mutate_after(bars, bars[t, 0], mutation)
    assert symbol_prefix_unchanged(compute_symbol_features, bars, changed, t)


def test_the_lookahead_check_catches_a_feature_that_peeks():
    """The property above can fail: a feature that reads the next bar is caught."""
    def peeking(bars):
        names, m = compute_symbol_features(bars)
        m = m.copy()
        m[:-1, 0] = m[1:, 0]  # "ret_1" of the next bar
        return names, m

    bars = make_bars(200, 3)
    changed = mutate_after(bars, bars[150, 0], {"kind": "resample", "seed": 1, "extra": 50})
    assert symbol_prefix_unchanged(compute_symbol_features, bars, changed, 150)
    assert not symbol_prefix_unchanged(peeking, bars, changed, 150)


universe_st = st.lists(
    st.fixed_dictionaries({
        "n": st.integers(20, 240),
        "offset": st.integers(0, 40),  # listed later than the others
        "seed": st.integers(0, 2**32 - 1),
        "vol": st.sampled_from([0.0, 0.004, 0.02]),
        "gaps": st.booleans(),  # some bars missing
    }),
    min_size=3, max_size=5,
)


def universe_from(specs):
    out = {}
    for i, s in enumerate(specs):
        rng = np.random.default_rng(s["seed"])
        times = T0 + BAR * (s["offset"] + np.arange(s["n"]))
        if s["gaps"]:
            times = times[rng.random(s["n"]) > 0.1]
        out[f"S{i}/USDT"] = make_bars(len(times), s["seed"], vol=s["vol"], times=times)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=universe_st, mutations=st.lists(mutation_st, min_size=5, max_size=5), data=st.data())
def test_universe_feature_rows_at_t_ignore_every_later_bar(specs, mutations, data):
    universe = universe_from(specs)
    grid = np.unique(np.concatenate([b[:, 0] for b in universe.values()]))
    cut = float(grid[data.draw(st.integers(0, len(grid) - 1), label="cut index")])
    changed = {k: mutate_after(b, cut, m) for (k, b), m in zip(universe.items(), mutations, strict=False)}
    # two sectors, so sector_peer_ret_12 has peers to read (and must not read their future)
    sectors = {k: ("a" if i % 2 else "b") for i, k in enumerate(universe)}
    _, before = compute_universe_features(universe, sectors=sectors)
    _, after = compute_universe_features(changed, sectors=sectors)
    for key, bars in universe.items():
        rows = int((bars[:, 0] <= cut).sum())
        assert np.array_equal(before[key][:rows], after[key][:rows], equal_nan=True), key


def test_a_symbol_computed_in_a_batch_equals_the_symbol_alone():
    """Equal-length symbols share one vectorized pass; each column is bit-identical to the
    symbol computed alone (so lookahead-free alone means lookahead-free in any batch)."""
    universe = {f"S{i}/USDT": make_bars(300, 60 + i, vol=0.01) for i in range(12)}
    rng = np.random.default_rng(5)  # and rising ones: 14 non-zero gains in RSI's first average
    universe.update({f"UP{i}/USDT": bars_from_close(100 + rng.uniform(0.01, 1, 300).cumsum(), spread=0.1)
                     for i in range(12)})
    raw = FeatureParams(recursive_warmup_bars=0)  # no warm-up to hide a last-bit difference in
    _, together = compute_universe_features(universe, raw)
    for key, bars in universe.items():
        _, alone = compute_symbol_features(bars, raw)
        assert np.array_equal(together[key][:, :len(SYM_NAMES)], alone, equal_nan=True), key


def test_universe_property_is_not_vacuous():
    """With long enough series the rows the property compares are complete, not all NaN, and
    the sector feature is not the constant a symbol without peers gets."""
    universe = {f"S{i}/USDT": make_bars(240, i) for i in range(3)}
    names, feats = compute_universe_features(universe, sectors=dict.fromkeys(universe, "a"))
    assert all(np.isfinite(m[MIN_BARS:]).all() for m in feats.values())
    peer = names.index("sector_peer_ret_12")
    assert all(np.std(m[MIN_BARS:, peer]) > 0 for m in feats.values())


def test_sector_peer_return_is_the_peers_mean_return_net_of_the_market():
    universe = {f"S{i}/USDT": make_bars(200, 30 + i) for i in range(4)}
    sectors = {"S0/USDT": "a", "S1/USDT": "a", "S2/USDT": "a", "S3/USDT": "b"}
    names, feats = compute_universe_features(universe, sectors=sectors)
    ret12, mkt12, peer = (names.index(n) for n in ("ret_12", "mkt_ret_12", "sector_peer_ret_12"))
    excess = {k: m[:, ret12] - m[:, mkt12] for k, m in feats.items()}
    np.testing.assert_allclose(feats["S0/USDT"][50:, peer], (excess["S1/USDT"][50:] + excess["S2/USDT"][50:]) / 2)
    assert (feats["S3/USDT"][:, peer] == 0).all()  # alone in its sector: no peers, 0
    _, without = compute_universe_features(universe)
    assert all((m[:, peer] == 0).all() for m in without.values())  # no sectors given: no peers


# --- each indicator against a direct computation -----------------------------------------------


def wilder_ref(values, period):
    """values[0] unused; mean of values[1..period], then avg += (x - avg) / period."""
    out = [math.nan] * len(values)
    if len(values) <= period:
        return out
    avg = sum(values[1:period + 1]) / period
    out[period] = avg
    for i in range(period + 1, len(values)):
        avg += (values[i] - avg) / period
        out[i] = avg
    return out


def ema_ref(values, span):
    a = 2.0 / (span + 1)
    out, y = [], values[0]
    for x in values:
        y = (1 - a) * y + a * x
        out.append(y)
    return out


def reference_features(bars):
    """The per-symbol features written out longhand, loop by loop."""
    _, _, high, low, close, volume = (list(col) for col in bars.T)
    n = len(close)
    ret1 = [math.nan] + [math.log(close[i] / close[i - 1]) for i in range(1, n)]
    ref = {}
    for k in (1, 3, 12, 48):
        ref[f"ret_{k}"] = [math.log(close[i] / close[i - k]) if i >= k else math.nan for i in range(n)]
    for w in (12, 48):
        ref[f"rvol_{w}"] = [statistics.stdev(ret1[i - w + 1:i + 1]) if i >= w else math.nan for i in range(n)]
    change = [math.nan] + [close[i] - close[i - 1] for i in range(1, n)]
    gain = wilder_ref([max(c, 0.0) for c in change], 14)
    loss = wilder_ref([max(-c, 0.0) for c in change], 14)
    ref["rsi_14"] = [100 - 100 / (1 + g / lo) if lo > 0 else 100.0 for g, lo in zip(gain, loss, strict=True)]
    fast, slow = ema_ref(close, 12), ema_ref(close, 26)
    macd = [f - s for f, s in zip(fast, slow, strict=True)]
    signal = ema_ref(macd, 9)
    ref["macd_line"] = [m / c for m, c in zip(macd, close, strict=True)]
    ref["macd_signal"] = [s / c for s, c in zip(signal, close, strict=True)]
    ref["macd_hist"] = [(m - s) / c for m, s, c in zip(macd, signal, close, strict=True)]
    pctb = [math.nan] * n
    for i in range(19, n):
        window = close[i - 19:i + 1]
        mid, sd = statistics.fmean(window), statistics.pstdev(window)
        upper, lower = mid + 2 * sd, mid - 2 * sd
        pctb[i] = (close[i] - lower) / (upper - lower)
    ref["bb_pctb_20"] = pctb
    tr = [math.nan] + [max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
                       for i in range(1, n)]
    ref["atr_pct_14"] = [100 * a / c for a, c in zip(wilder_ref(tr, 14), close, strict=True)]
    ref["volz_48"] = [(volume[i] - statistics.fmean(volume[i - 47:i + 1])) / statistics.stdev(volume[i - 47:i + 1])
                      if i >= 47 else math.nan for i in range(n)]
    return ref


def test_every_symbol_feature_matches_its_longhand_definition():
    bars = make_bars(180, 11, vol=0.01)
    names, m = compute_symbol_features(bars)
    assert names == SYM_NAMES
    ref = reference_features(bars)
    first = compute.first_valid_rows()
    for j, name in enumerate(names):
        assert np.isnan(m[:first[name], j]).all(), f"{name} has values before its warm-up"
        np.testing.assert_allclose(m[first[name]:, j], np.array(ref[name])[first[name]:], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_warm_up_rows_are_as_documented():
    first = compute.first_valid_rows()
    assert first["ret_48"] == 48 and first["rvol_12"] == 12 and first["volz_48"] == 47
    assert first["rsi_14"] == first["macd_line"] == first["atr_pct_14"] == DEFAULT_PARAMS.recursive_warmup_bars
    assert MIN_BARS == 111  # row 110: recursive warm-up (100) and a 64-bar window of channels from row 47


def upper_band_window(level=100.0):
    """20 closes whose last equals SMA + 2 population std: mean 0, std 1, last = 2, shifted."""
    e = math.sqrt((16 - 4 / 19) / 18)
    base = -2 / 19
    values = [base] + [base + e] * 9 + [base - e] * 9 + [2.0]
    return level + np.array(values)


@pytest.mark.parametrize("close, feature, expected", [
    (100 + np.arange(130.0), "rsi_14", 100.0),  # strictly rising: no losses
    (300 - np.arange(130.0), "rsi_14", 0.0),  # strictly falling: no gains
    (np.full(130, 50.0), "rsi_14", 50.0),  # no change at all
    # +1, -1, +1, ...: Wilder's averages settle at 14/27 and 13/27, so after a down RSI = 100 x 13/27
    (100 + np.tile([1.0, -1.0], 300).cumsum(), "rsi_14", 100 * 13 / 27),
    (np.full(130, 50.0), "macd_line", 0.0),
    (np.full(130, 50.0), "macd_hist", 0.0),
    (np.r_[np.full(110, 100.0), upper_band_window()], "bb_pctb_20", 1.0),
    (np.r_[np.full(110, 100.0), 200 - upper_band_window()], "bb_pctb_20", 0.0),  # mirrored: the lower band
    (np.full(130, 50.0), "bb_pctb_20", 0.5),  # no band width
    (np.full(130, 50.0), "rvol_48", 0.0),
    (np.full(130, 50.0), "ret_12", 0.0),
    (100 * np.exp(0.01 * np.arange(130.0)), "ret_12", 0.12),
    (100 * np.exp(0.01 * np.arange(130.0)), "rvol_12", 0.0),
])
def test_indicator_table(close, feature, expected):
    _, m = compute_symbol_features(bars_from_close(close))
    assert m[-1, SYM_NAMES.index(feature)] == pytest.approx(expected, abs=1e-9)


def test_atr_and_volume_z_score_table():
    close = np.full(130, 100.0)
    _, m = compute_symbol_features(bars_from_close(close, spread=0.5))  # every bar spans 1.0
    assert m[-1, SYM_NAMES.index("atr_pct_14")] == pytest.approx(1.0)  # 1.0 / 100 in percent
    assert m[-1, SYM_NAMES.index("volz_48")] == 0.0  # constant volume
    _, m = compute_symbol_features(bars_from_close(close, volume=np.zeros(130)))
    assert m[-1, SYM_NAMES.index("volz_48")] == 0.0  # no trades at all: still a number
    volume = np.r_[np.full(129, 10.0), 10.0 + 48.0]  # one spike at the end
    _, m = compute_symbol_features(bars_from_close(close, volume=volume))
    window = volume[-48:]
    assert m[-1, SYM_NAMES.index("volz_48")] == pytest.approx((58 - window.mean()) / window.std(ddof=1))


def test_cross_sectional_ranks_and_market_factor():
    # A2 is a copy of A (ties); B drifts fastest and alone has volatility; C falls
    closes = {"A": 100 * np.exp(0.001 * np.arange(150.0)), "B": 100 * np.exp(0.003 * np.arange(150.0)),
              "C": 100 * np.exp(-0.002 * np.arange(150.0))}
    closes["A2"] = closes["A"].copy()
    closes["B"] *= 1 + 0.001 * np.sin(np.arange(150.0))
    universe = {k: bars_from_close(c) for k, c in closes.items()}
    names, feats = compute_universe_features(universe)
    assert names == NAMES
    rank = {k: feats[k][-1, COL["cs_rank_ret_12"]] for k in universe}
    assert rank == {"A": 0.5, "A2": 0.5, "B": 1.0, "C": 0.0}  # (1 below + (2 equal - 1) / 2) / 3
    vol_rank = {k: feats[k][-1, COL["cs_rank_rvol_48"]] for k in universe}
    assert vol_rank["B"] == 1.0 and vol_rank["A"] == vol_rank["A2"]
    one_bar = {k: np.diff(np.log(b[:, 4])) for k, b in universe.items()}
    market = np.mean(list(one_bar.values()), axis=0)
    for k in universe:
        assert feats[k][-1, COL["mkt_ret_1"]] == pytest.approx(market[-1], abs=1e-15)
        assert feats[k][-1, COL["mkt_ret_12"]] == pytest.approx(market[-12:].sum(), abs=1e-14)
    # a symbol alone at a timestamp ranks in the middle; missing symbols do not count
    solo = {"A": universe["A"], "B": universe["B"][100:]}
    _, f = compute_universe_features(solo)
    assert f["A"][60, COL["cs_rank_ret_12"]] == 0.5
    assert f["A"][60, COL["mkt_ret_1"]] == pytest.approx(one_bar["A"][59], abs=1e-15)


def test_a_bad_bar_of_one_symbol_does_not_move_the_others():
    universe = {f"S{i}": make_bars(150, i) for i in range(4)}
    _, clean = compute_universe_features(universe)
    bad = {k: b.copy() for k, b in universe.items()}
    bad["S0"][-1, 4] = np.nan
    _, dirty = compute_universe_features(bad)
    assert np.isnan(dirty["S0"][-1, COL["ret_1"]])
    others = [k for k in universe if k != "S0"]
    # the market factor and the ranks are taken over the symbols with a finite value
    three = np.mean([np.log(universe[k][-1, 4] / universe[k][-2, 4]) for k in others])
    for k in others:
        assert dirty[k][-1, COL["mkt_ret_1"]] == pytest.approx(three, abs=1e-15)
        assert np.isfinite(dirty[k][-1]).all()
        assert not np.array_equal(clean[k][-1], dirty[k][-1])


def test_bad_bars_are_refused():
    with pytest.raises(BadBars, match="shape"):
        compute_symbol_features(np.zeros((5, 5)))
    bars = make_bars(10)
    bars[5, 0] = bars[4, 0]
    with pytest.raises(BadBars, match="strictly increasing: row 5"):
        compute_symbol_features(bars)
    names, m = compute_symbol_features(np.empty((0, 6)))
    assert m.shape == (0, len(SYM_NAMES))


# --- feature set hash ------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"rsi_period": 10}, {"return_horizons": (1, 3, 12, 96)}, {"bollinger_k": 2.5},
    {"volume_z_window": 96, "seq_channels": ("ret_1", "rvol_12", "volz_96")},
    {"recursive_warmup_bars": 150}, {"seq_channels": ("ret_1", "rvol_48")}, {"macd_signal": 7},
])
def test_hash_changes_with_any_parameter(change):
    assert feature_set_hash(dataclasses.replace(DEFAULT_PARAMS, **change)) != feature_set_hash()


def test_hash_is_stable_and_follows_version_and_names():
    h = feature_set_hash()
    assert len(h) == 64 and h == feature_set_hash(FeatureParams())
    assert feature_set_hash(version="1") != h  # the version before sector_peer_ret_12
    assert feature_set_hash(names=list(reversed(NAMES))) != h  # order matters
    assert feature_set_hash(names=NAMES[:-1]) != h


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="macd_fast"):
        FeatureParams(macd_fast=30)
    with pytest.raises(ValueError, match="seq_channels"):
        FeatureParams(seq_channels=("mkt_ret_1",))
    with pytest.raises(ValueError, match="repeat"):
        FeatureParams(return_horizons=(1, 1, 12, 48))


# --- validators --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, r"\+inf"), (-np.inf, "-inf")])
def test_non_finite_values_are_rejected_naming_feature_and_row(value, kind):
    m = np.ones((5, len(NAMES)))
    m[3, COL["rsi_14"]] = value
    m[4, COL["volz_48"]] = value
    with pytest.raises(FeatureValueError, match=rf"feature 'rsi_14' is {kind} at row 103 \(t_ms=42\) for BTC/USDT; "
                                                r"2 non-finite value\(s\) in 2 feature\(s\)"):
        validate_features(m, NAMES, symbol="BTC/USDT", t_ms=np.array([0, 0, 0, 42, 0]), row_offset=100)
    validate_features(np.ones((5, len(NAMES))), NAMES)  # finite: no error


def test_too_little_history_is_reported_with_the_bars_needed():
    universe = {"OLD/USDT": make_bars(MIN_BARS), "NEW/USDT": make_bars(MIN_BARS - 1)}
    assert insufficient_history(universe) == {
        "NEW/USDT": "too little history: 110 bars, needs at least 111 (101 for the features, 64-bar sequence window)"}
    assert set(insufficient_history(universe, extra_bars=12)) == {"OLD/USDT", "NEW/USDT"}
    assert min_history_bars(lookback=8) == 101


# --- labels --------------------------------------------------------------------------------------


def test_neutral_band_covers_a_round_trip():
    assert pytest.approx(0.002) == DEFAULT_BAND  # (0.05 % fee + 0.05 % slippage) x 2 sides
    assert neutral_band(taker_fee_rate=0.001, slippage_rate=0.0) == pytest.approx(0.002)
    assert neutral_band(0.0004, 0.0002) == pytest.approx(0.0012)
    with pytest.raises(ValueError):
        neutral_band(-0.001)


def test_labels_up_down_and_excluded():
    fwd = np.array([0.0021, -0.0021, 0.002, -0.002, 0.0, 0.0019, np.nan])
    assert np.array_equal(labels_from_returns(fwd, 0.002), [1, 0, np.nan, np.nan, np.nan, np.nan, np.nan],
                          equal_nan=True)
    close = np.array([100.0, 100.5, 100.0, 100.1, 99.5, 99.5])  # steps: +0.5%, -0.5%, +0.1%, -0.6%, 0
    np.testing.assert_allclose(forward_log_return(close, 1)[:-1], np.diff(np.log(close)))
    assert np.array_equal(direction_labels(close, horizon=1), [1, 0, np.nan, 0, np.nan, np.nan], equal_nan=True)
    two = direction_labels(close, horizon=2)
    assert np.array_equal(two, [np.nan, 0, 0, 0, np.nan, np.nan], equal_nan=True)  # last 2: no future yet
    assert np.isnan(direction_labels(close, horizon=10)).all()


# --- splits -------------------------------------------------------------------------------------


def sample_index(n_symbols, n_bars, horizon, seed, gaps):
    """t_ms and label_end_ms as build_dataset makes them: label ends h rows later in the
    symbol's own (possibly gappy) series."""
    rng = np.random.default_rng(seed)
    t_all, end_all = [], []
    for _ in range(n_symbols):
        times = T0 + BAR * (int(rng.integers(0, 20)) + np.arange(n_bars))
        if gaps:
            times = times[rng.random(n_bars) > 0.15]
        t_all.append(times[:-horizon])
        end_all.append(times[horizon:])
    return np.concatenate(t_all).astype(np.int64), np.concatenate(end_all).astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(n_symbols=st.integers(1, 4), n_bars=st.integers(30, 400), horizon=st.integers(1, 24),
       n_splits=st.integers(1, 6), mode=st.sampled_from(["expanding", "rolling"]), train_size=st.integers(1, 200),
       extra_purge=st.integers(0, 10), embargo=st.integers(0, 30), seed=st.integers(0, 10**6), gaps=st.booleans())
def test_walk_forward_no_training_label_reaches_the_test_window(n_symbols, n_bars, horizon, n_splits, mode, train_size,
                                                                extra_purge, embargo, seed, gaps):
    t, end = sample_index(n_symbols, n_bars, horizon, seed, gaps)
    assume(len(t) > 0)
    grid = np.unique(t)
    purge = horizon + extra_purge
    try:
        folds = list(walk_forward(t, end, horizon_bars=horizon, n_splits=n_splits, mode=mode, train_size=train_size,
                                  purge_bars=purge, embargo_bars=embargo))
    except SplitError:
        assume(False)
    assert len(folds) == n_splits
    previous_test_end = None
    for train, test in folds:
        assert len(train) and len(test)
        assert end[train].max() < t[test].min()  # the purge property
        assert np.intersect1d(train, test).size == 0
        gap = np.searchsorted(grid, t[test].min()) - np.searchsorted(grid, t[train].max())
        assert gap > purge  # at least `purge` timestamps in neither set
        if mode == "rolling":
            assert len(np.unique(t[train])) <= train_size
        if previous_test_end is not None:
            assert np.searchsorted(grid, t[test].min()) - np.searchsorted(grid, previous_test_end) > embargo
        previous_test_end = t[test].max()
        assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()


def test_purge_uses_the_label_end_across_a_gap():
    # one symbol has a 50-bar hole: its label at bar 9 ends after the hole, inside the test window
    t = np.array([T0 + BAR * i for i in range(100)] + [T0 + BAR * 9], dtype=np.int64)
    end = np.r_[t[:100] + BAR, T0 + BAR * 80].astype(np.int64)
    train, test = train_validation_split(t, end, horizon_bars=1, validation_fraction=0.25)
    assert t[test].min() == T0 + BAR * 75
    assert 100 not in train and 9 in train  # the same time, the other symbol's label ends in time
    assert end[train].max() < t[test].min()


def test_split_layout_errors_are_clear():
    t = (T0 + BAR * np.arange(50)).astype(np.int64)
    with pytest.raises(SplitError, match="at least the label horizon"):
        list(walk_forward(t, t + 12 * BAR, horizon_bars=12, purge_bars=6))
    with pytest.raises(SplitError, match="too few|no training"):
        list(walk_forward(t, t + 12 * BAR, horizon_bars=12, n_splits=10))
    with pytest.raises(SplitError, match="train_size"):
        list(walk_forward(t, t + BAR, horizon_bars=1, mode="rolling"))


# --- the dataset and the inference rows --------------------------------------------------------


@pytest.fixture(scope="module")
def universe():
    data = {f"S{i}/USDT": make_bars(400, 100 + i, vol=0.004) for i in range(5)}
    data["NEW/USDT"] = make_bars(100, 7, start=T0 + BAR * 300)  # listed late: too little history
    return data


def test_dataset_contract(universe):
    ds = build_dataset(universe, horizon=12, lookback=64)
    n = len(ds)
    assert n > 500
    assert ds.X_tab.shape == (n, len(NAMES)) and ds.X_tab.dtype == np.float32
    assert ds.X_seq.shape == (n, 64, 3) and ds.X_seq.dtype == np.float32
    assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == {0, 1}
    assert ds.t_ms.dtype == np.int64 and ds.label_end_ms.dtype == np.int64
    assert ds.symbol.dtype.kind == "U" and set(ds.symbol) == {f"S{i}/USDT" for i in range(5)}
    assert ds.feature_names == tuple(NAMES) and ds.seq_channels == ("ret_1", "rvol_12", "volz_48")
    assert ds.feature_version == compute.FEATURE_VERSION and ds.feature_hash == feature_set_hash()
    assert ds.horizon == 12 and ds.band == DEFAULT_BAND
    assert ds.excluded == {"NEW/USDT": "too little history: 100 bars, needs at least 123 (101 for the features, "
                                       "64-bar sequence window + 12 for the label horizon)"}
    assert np.isfinite(ds.X_tab).all() and np.isfinite(ds.X_seq).all()
    order = np.lexsort((ds.symbol, ds.t_ms))
    assert (order == np.arange(n)).all()  # time-ordered
    assert (ds.label_end_ms == ds.t_ms + 12 * BAR).all()
    assert (np.abs(ds.fwd_log_return) > DEFAULT_BAND).all()
    assert (ds.y == (ds.fwd_log_return > 0)).all()


def test_dataset_rows_are_the_feature_rows_and_labels(universe):
    ds = build_dataset(universe, horizon=12, lookback=64)
    _, feats = compute_universe_features(universe)
    sym = "S2/USDT"
    bars = universe[sym]
    mine = np.flatnonzero(ds.symbol == sym)
    rows = np.searchsorted(bars[:, 0], ds.t_ms[mine])
    assert rows.min() == MIN_BARS - 1
    np.testing.assert_array_equal(ds.X_tab[mine], feats[sym][rows].astype(np.float32))
    expected = direction_labels(bars[:, 4], 12)
    np.testing.assert_array_equal(ds.y[mine], expected[rows])
    candidates = np.arange(MIN_BARS - 1, len(bars) - 12)
    assert np.isnan(expected[candidates[~np.isin(candidates, rows)]]).all()  # the rows left out: in the band
    channels = [COL[c] for c in ds.seq_channels]
    r = rows[7]
    np.testing.assert_array_equal(ds.X_seq[mine[7]], feats[sym][r - 63:r + 1][:, channels].astype(np.float32))
    np.testing.assert_array_equal(ds.X_seq[mine][:, -1, :], ds.X_tab[mine][:, channels])


def test_dataset_sampling_and_splits(universe):
    every4 = build_dataset(universe, sample_every=4)
    assert (every4.t_ms // BAR % 4 == 0).all() and 0 < len(every4) < len(build_dataset(universe)) / 3
    ds = build_dataset(universe)
    shifted = {k: np.column_stack([b[:, 0] + 1234, b[:, 1:]]) for k, b in universe.items()}  # off the 5m grid
    assert len(build_dataset(shifted)) == len(ds)
    assert len(build_dataset(shifted, sample_every=4)) == len(every4)
    train, test = train_validation_split(ds.t_ms, ds.label_end_ms, horizon_bars=ds.horizon)
    assert ds.take(train).label_end_ms.max() < ds.take(test).t_ms.min()
    assert ds.metadata()["n_samples"] == len(ds) and ds.metadata()["feature_hash"] == ds.feature_hash


def test_a_symbol_with_a_bad_bar_is_excluded_with_the_feature_named(universe):
    bad = dict(universe)
    bars = universe["S1/USDT"].copy()
    bars[250, 4] = np.nan
    bad["S1/USDT"] = bars
    ds = build_dataset(bad)
    assert ds.excluded["S1/USDT"].startswith("feature 'ret_1' is NaN at row 250 (t_ms=")
    assert "S1/USDT" not in set(ds.symbol) and len(ds) > 0  # the others proceed


def test_latest_rows_for_inference(universe):
    rows = latest_rows(universe)
    assert rows.symbols == tuple(f"S{i}/USDT" for i in range(5))
    assert rows.X_tab.shape == (5, len(NAMES)) and rows.X_seq.shape == (5, 64, 3)
    assert rows.X_tab.dtype == rows.X_seq.dtype == np.float32
    assert (rows.t_ms == universe["S0/USDT"][-1, 0]).all()
    assert rows.skipped == {"NEW/USDT": "too little history: 100 bars, needs at least 111 (101 for the features, "
                                        "64-bar sequence window)"}
    assert rows.row("NEW/USDT").startswith("too little history")
    _, feats = compute_universe_features(universe)
    tab, seq = rows.row("S3/USDT")
    np.testing.assert_array_equal(tab, feats["S3/USDT"][-1].astype(np.float32))
    np.testing.assert_array_equal(seq, feats["S3/USDT"][-64:, [COL[c] for c in rows.seq_channels]].astype(np.float32))


def test_latest_rows_reasons_nan_and_stale(universe):
    data = {k: v.copy() for k, v in universe.items() if k != "NEW/USDT"}
    data["S0/USDT"][-1, 5] = np.inf  # a broken volume print on the last bar
    data["S4/USDT"] = data["S4/USDT"][:-3]  # its feed stopped three bars ago
    rows = latest_rows(data)
    assert rows.symbols == ("S1/USDT", "S2/USDT", "S3/USDT")
    assert rows.skipped["S0/USDT"].startswith("feature 'volz_48' is NaN at row 399")
    assert rows.skipped["S4/USDT"].startswith("stale: last bar at")


def test_exactly_enough_history_gives_a_row_one_bar_less_does_not():
    data = {"A": make_bars(MIN_BARS, 1), "B": make_bars(MIN_BARS, 2), "C": make_bars(MIN_BARS, 3)}
    assert latest_rows(data).symbols == ("A", "B", "C")
    short = {k: v[1:] for k, v in data.items()}
    assert latest_rows(short).symbols == () and set(latest_rows(short).skipped) == {"A", "B", "C"}


def test_inference_window_reproduces_the_training_rows():
    """The last row from INFERENCE_BARS bars equals the one from the full history to ~1e-8: the
    recursive features have forgotten where the read started, the windows are exact."""
    full = {f"S{i}": make_bars(1500, 40 + i, vol=0.006) for i in range(4)}
    _, trained = compute_universe_features(full)
    served = latest_rows({k: v[-INFERENCE_BARS:] for k, v in full.items()})
    for i, sym in enumerate(served.symbols):
        np.testing.assert_allclose(served.X_tab[i], trained[sym][-1].astype(np.float32), rtol=1e-6, atol=1e-7)
    windowed = [COL[c] for c in ("ret_12", "rvol_48", "bb_pctb_20", "volz_48", "cs_rank_ret_12", "mkt_ret_12")]
    assert np.array_equal(served.X_tab[:, windowed],
                          np.array([trained[s][-1, windowed] for s in served.symbols], dtype=np.float32))


# --- from the database --------------------------------------------------------------------------


@pytest.mark.django_db
def test_dataset_from_a_seeded_market():
    from trading.simulator.service import seed_history

    seed = seed_history(days=3, seed=1)
    ds = dataset.dataset_from_db(exchange="paper", timeframe="5m")
    n_symbols = seed.symbols
    assert n_symbols >= 40 and seed.bars_per_symbol == 864
    assert ds.excluded == {}
    assert len(set(ds.symbol)) == n_symbols
    per_symbol = len(ds) / n_symbols
    assert 0.3 * (864 - MIN_BARS - 11) < per_symbol <= 864 - MIN_BARS - 11  # minus warm-up, horizon, band
    assert ds.X_tab.shape == (len(ds), len(NAMES)) and ds.X_seq.shape == (len(ds), 64, 3)
    assert np.isfinite(ds.X_tab).all() and np.isfinite(ds.X_seq).all()
    assert 0.3 < ds.y.mean() < 0.7
    assert (np.diff(ds.t_ms) >= 0).all()
    rows = latest_rows(dataset.bars_from_db(n_bars=INFERENCE_BARS))
    assert len(rows.symbols) == n_symbols and rows.skipped == {}
    assert np.isfinite(rows.X_tab).all()
    two = dataset.dataset_from_db(symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"], n_bars=300, horizon=6)
    assert set(two.symbol) == {"BTC/USDT:USDT", "ETH/USDT:USDT"} and two.horizon == 6
