"""Features from bars: per-symbol indicators and cross-sectional (universe) features.

Pure numpy (and scipy.signal.lfilter for the recursive filters); no Django.

Input bars are rows [open_time_ms, open, high, low, close, volume], oldest first (the shape
`trading.marketdata.selectors.last_bars` returns). Output: one feature row per bar.

No lookahead. The row at bar t reads only bars <= t: trailing rolling windows, recursive
filters (EMA, Wilder) run forwards from the first bar, cross-sectional values compare the
symbols at the same timestamp. Nothing is centered, back-filled or normalized over the whole
series. A row without enough history is NaN (never filled), and `ai/tests/test_features.py`
proves with hypothesis that a row is bit-identical when every later bar changes or vanishes.

Per symbol (names for the default parameters):
- ret_1, ret_3, ret_12, ret_48: log return of the close over k bars;
- rvol_12, rvol_48: realized volatility, sample std (ddof=1) of the last w 1-bar log returns;
- rsi_14: Wilder's RSI (seeded with the mean of the first 14 changes, then smoothed by 1/14);
- macd_line, macd_signal, macd_hist: EMA(12) - EMA(26) of the close, its EMA(9), their
  difference; each divided by the current close, so symbols at any price level compare;
- bb_pctb_20: Bollinger %B, (close - lower) / (upper - lower) with SMA(20) +- 2 population
  std; 0.5 when the band has no width (20 equal closes);
- atr_pct_14: Wilder's ATR(14) in percent of the close;
- volz_48: z-score of the volume within the last 48 bars (sample std); 0 when they are equal.
Across the universe (`compute_universe_features`), at each timestamp, among the symbols that
have a bar there and a finite value:
- cs_rank_ret_12, cs_rank_rvol_48: percentile rank in [0, 1] (ties averaged; 0.5 alone);
- mkt_ret_1: the market factor, equal-weighted mean 1-bar log return; mkt_ret_12: its sum
  over the last 12 timestamps;
- sector_peer_ret_12: the mean, over the symbol's sector peers (the other symbols of its
  sector with a finite value at that timestamp), of their ret_12 net of the market
  (ret_12 - mkt_ret_12). It sees news that moved the sector without the symbol; 0 for a symbol
  without peers (or when no sectors are given), NaN while its peers have no ret_12 yet.

Recursive features (EMA, Wilder) remember their start forever in principle; they are NaN for
the first `recursive_warmup_bars` rows, by when the seed's weight is below 0.1 %, and at
inference one reads `INFERENCE_BARS` bars so that the last row agrees with the row the model
was trained on (the start differs, the difference has decayed to ~1e-8).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import lfilter

FEATURE_VERSION = "2"  # 2 added sector_peer_ret_12

# Sequence window of the sequence models (N-HiTS, PatchTST): 64 bars of 5m = 5h20 of context.
DEFAULT_LOOKBACK = 64
# Bars to read for inference: every window plus the lookback (111 bars), and enough for the
# recursive features to forget where the read started: at the last of 256 bars, Wilder's 14
# (the slowest filter) weighs the start by (13/14)^242 ~ 2e-8, so the row matches the one
# computed from the full history at training time to ~1e-8 relative (tested). 256 rather than
# more because inference time grows with it (all 50 symbols' features in ~10 ms).
INFERENCE_BARS = 256
# A band or a volume window is treated as having no width when its std is below this fraction
# of its mean: rolling sums of equal values can leave ~1e-17 of rounding, which divided by
# itself would give an arbitrary %B or z-score.
ZERO_WIDTH_REL = 1e-12


class FeatureError(Exception):
    """Base of the feature layer's errors. Not recoverable by retrying: the input is wrong."""


class BadBars(FeatureError, ValueError):
    """Bars with the wrong shape or with open times that are not strictly increasing."""


class FeatureValueError(FeatureError, ValueError):
    """A NaN or infinite feature value where a model would read it; names feature and row."""


@dataclass(frozen=True)
class FeatureParams:
    """Every number that shapes a feature. All of it enters `feature_set_hash`."""

    return_horizons: tuple[int, ...] = (1, 3, 12, 48)
    volatility_windows: tuple[int, ...] = (12, 48)
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bollinger_window: int = 20
    bollinger_k: float = 2.0
    atr_period: int = 14
    volume_z_window: int = 48
    # Rows before this are NaN for EMA/Wilder features: (13/14)^100 = 6e-4, the slowest filter
    # (Wilder 14) has then forgotten its seed to within 0.1 %.
    recursive_warmup_bars: int = 100
    cs_rank_return_horizon: int = 12
    cs_rank_volatility_window: int = 48
    market_sum_bars: int = 12
    # Channels of the sequence models' input window, per bar (names of per-symbol features).
    seq_channels: tuple[str, ...] = ("ret_1", "rvol_12", "volz_48")

    def __post_init__(self):
        windows = [*self.return_horizons, *self.volatility_windows, self.rsi_period, self.macd_fast,
                   self.macd_slow, self.macd_signal, self.bollinger_window, self.atr_period,
                   self.volume_z_window, self.market_sum_bars]
        if min(windows) < 1:
            raise ValueError("every window and horizon must be at least 1 bar")
        if min(self.volatility_windows) < 2 or self.volume_z_window < 2 or self.bollinger_window < 2:
            raise ValueError("a standard deviation needs a window of at least 2 bars")
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast must be shorter than macd_slow")
        if self.bollinger_k <= 0:
            raise ValueError("bollinger_k must be positive")
        if self.recursive_warmup_bars < 0:
            raise ValueError("recursive_warmup_bars must be >= 0")
        if self.cs_rank_return_horizon not in self.return_horizons:
            raise ValueError("cs_rank_return_horizon must be one of return_horizons")
        if self.cs_rank_volatility_window not in self.volatility_windows:
            raise ValueError("cs_rank_volatility_window must be one of volatility_windows")
        names = _symbol_names(self)
        if len(set(names)) != len(names):
            raise ValueError("return_horizons and volatility_windows must not repeat a value")
        unknown = [c for c in self.seq_channels if c not in names]
        if unknown or not self.seq_channels:
            raise ValueError(f"seq_channels must be per-symbol features, unknown: {unknown}")


def _symbol_names(p: FeatureParams) -> list[str]:
    return [
        *(f"ret_{k}" for k in p.return_horizons),
        *(f"rvol_{w}" for w in p.volatility_windows),
        f"rsi_{p.rsi_period}",
        "macd_line", "macd_signal", "macd_hist",
        f"bb_pctb_{p.bollinger_window}",
        f"atr_pct_{p.atr_period}",
        f"volz_{p.volume_z_window}",
    ]


DEFAULT_PARAMS = FeatureParams()


# --- names, warm-up, hash ------------------------------------------------------------------


def symbol_feature_names(params: FeatureParams = DEFAULT_PARAMS) -> list[str]:
    return _symbol_names(params)


def universe_feature_names(params: FeatureParams = DEFAULT_PARAMS) -> list[str]:
    p = params
    return [f"cs_rank_ret_{p.cs_rank_return_horizon}", f"cs_rank_rvol_{p.cs_rank_volatility_window}",
            "mkt_ret_1", f"mkt_ret_{p.market_sum_bars}", f"sector_peer_ret_{p.cs_rank_return_horizon}"]


def feature_names(params: FeatureParams = DEFAULT_PARAMS) -> list[str]:
    """The ordered columns of `compute_universe_features` (the model's tabular input)."""
    return symbol_feature_names(params) + universe_feature_names(params)


def first_valid_rows(params: FeatureParams = DEFAULT_PARAMS) -> dict[str, int]:
    """Per feature, the first row index (0-based) that can be finite: rows before are NaN."""
    p = params
    recursive = p.recursive_warmup_bars
    macd_first = max(recursive, p.macd_slow + p.macd_signal - 2)
    first = {
        **{f"ret_{k}": k for k in p.return_horizons},
        **{f"rvol_{w}": w for w in p.volatility_windows},  # w returns, the first needs bar 1
        f"rsi_{p.rsi_period}": max(p.rsi_period, recursive),
        "macd_line": macd_first, "macd_signal": macd_first, "macd_hist": macd_first,
        f"bb_pctb_{p.bollinger_window}": p.bollinger_window - 1,
        f"atr_pct_{p.atr_period}": max(p.atr_period, recursive),
        f"volz_{p.volume_z_window}": p.volume_z_window - 1,
    }
    first.update({
        f"cs_rank_ret_{p.cs_rank_return_horizon}": first[f"ret_{p.cs_rank_return_horizon}"],
        f"cs_rank_rvol_{p.cs_rank_volatility_window}": first[f"rvol_{p.cs_rank_volatility_window}"],
        "mkt_ret_1": 1,
        f"mkt_ret_{p.market_sum_bars}": p.market_sum_bars,
        f"sector_peer_ret_{p.cs_rank_return_horizon}": max(p.cs_rank_return_horizon, p.market_sum_bars),
    })
    return first


def min_history_bars(lookback: int = DEFAULT_LOOKBACK, params: FeatureParams = DEFAULT_PARAMS) -> int:
    """Bars a symbol needs for one complete row: every feature finite at the last bar and a
    full `lookback` window of sequence channels behind it."""
    if lookback < 1:
        raise ValueError("lookback must be at least 1 bar")
    first = first_valid_rows(params)
    tab_first = max(first.values())
    seq_first = max(first[c] for c in params.seq_channels)
    return max(tab_first, seq_first + lookback - 1) + 1


def feature_set_hash(params: FeatureParams = DEFAULT_PARAMS, *, version: str = FEATURE_VERSION,
                     names: list[str] | None = None) -> str:
    """sha256 over the version, the ordered feature names and every parameter: a model records
    it, and a model whose hash differs from the running code's is refused."""
    payload = {
        "version": version,
        "names": list(names if names is not None else feature_names(params)),
        "params": asdict(params),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


# --- input checks ----------------------------------------------------------------------------


def as_bars(bars) -> np.ndarray:
    """`bars` as a float64 (n, 6) array; BadBars for another shape or unordered open times.
    Prices and volumes are not judged here: bad values become NaN/inf features, which
    `validate_features` rejects before a model sees them."""
    arr = np.asarray(bars, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise BadBars(f"bars must be rows [open_time_ms, open, high, low, close, volume], got shape {arr.shape}")
    if len(arr) > 1 and not (np.diff(arr[:, 0]) > 0).all():
        bad = int(np.argmin(np.diff(arr[:, 0]) > 0)) + 1
        raise BadBars(f"open times must be strictly increasing: row {bad} ({arr[bad, 0]!r}) "
                      f"after {arr[bad - 1, 0]!r}")
    return arr


def validate_features(matrix: np.ndarray, names: list[str], *, symbol: Hashable | None = None,
                      t_ms: np.ndarray | None = None, row_offset: int = 0) -> None:
    """Raise FeatureValueError naming the first NaN or infinite value (feature, row, time,
    symbol) and how many there are; return quietly when every value is finite."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise FeatureValueError(f"feature matrix of shape {matrix.shape} does not match {len(names)} names")
    finite = np.isfinite(matrix)
    if finite.all():
        return
    rows, cols = np.nonzero(~finite)
    r, c = int(rows[0]), int(cols[0])
    value = matrix[r, c]
    kind = "NaN" if np.isnan(value) else ("+inf" if value > 0 else "-inf")
    where = f"row {r + row_offset}"
    if t_ms is not None:
        where += f" (t_ms={int(t_ms[r])})"
    who = f" for {symbol}" if symbol is not None else ""
    raise FeatureValueError(f"feature {names[c]!r} is {kind} at {where}{who}; "
                            f"{len(rows)} non-finite value(s) in {len(np.unique(cols))} feature(s)")


def insufficient_history(bars_by_symbol: Mapping[Hashable, np.ndarray], *, lookback: int = DEFAULT_LOOKBACK,
                         extra_bars: int = 0, params: FeatureParams = DEFAULT_PARAMS) -> dict[Hashable, str]:
    """{symbol: reason} for the symbols with too few bars for one complete row (plus
    `extra_bars`, e.g. a label horizon); the others are absent."""
    need = min_history_bars(lookback, params)
    tab = max(first_valid_rows(params).values()) + 1
    out = {}
    for key, bars in bars_by_symbol.items():
        n = len(bars)
        if n < need + extra_bars:
            plus = f" + {extra_bars} for the label horizon" if extra_bars else ""
            out[key] = (f"too little history: {n} bars, needs at least {need + extra_bars} "
                        f"({tab} for the features, {lookback}-bar sequence window{plus})")
    return out


# --- per-symbol features -----------------------------------------------------------------------
# The kernels work on (n_bars, n_symbols) arrays, one column per symbol of the same length, so a
# universe of equal-length series costs one pass per indicator, not one per symbol; every
# column is computed exactly as it would be alone.


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _window_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of x[t - window + 1 .. t] at row t (NaN before row window - 1), per column.

    Summed window by window in a fixed order (loop over the window's offsets, vectorized over
    rows and symbols): a row's value depends only on its own window, bit for bit, whatever
    came before it, after it or in other columns. So a series read from bar 0 (training) or
    from 512 bars back (inference) gives the same rolling values, and an online add/remove
    algorithm's drift cannot creep in."""
    out = np.full(x.shape, np.nan)
    n = len(x)
    if n < window:
        return out
    m = n - window + 1
    acc = x[0:m].copy()
    for j in range(1, window):
        acc += x[j:j + m]
    out[window - 1:] = acc
    return out


def _rolling_mean_std(x: np.ndarray, window: int, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and standard deviation (two-pass, per window; see _window_sum)."""
    mean = _window_sum(x, window) / window
    n = len(x)
    sq = np.full(x.shape, np.nan)
    if n >= window:
        m = n - window + 1
        mu = mean[window - 1:]
        acc = np.zeros_like(mu)
        for j in range(window):
            d = x[j:j + m] - mu
            acc += d * d
        sq[window - 1:] = acc
    return mean, np.sqrt(sq / (window - ddof))


def _ema(x: np.ndarray, alpha: float, seed: np.ndarray) -> np.ndarray:
    """y[0] = (1 - alpha) seed + alpha x[0], y[t] = (1 - alpha) y[t-1] + alpha x[t], per column.
    A causal IIR filter: NaN in x stays NaN from there on (the validator then names it)."""
    zi = ((1.0 - alpha) * seed)[np.newaxis, :]
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], x, axis=0, zi=zi)
    return y


def _wilder(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing of x whose row 0 is undefined: the mean of rows 1..period at row
    `period`, then avg += (x - avg) / period. NaN before row `period`."""
    out = np.full_like(x, np.nan)
    if len(x) <= period:
        return out
    seed = x[1].copy()
    for i in range(2, period + 1):  # summed row by row: numpy's mean would sum one column
        seed += x[i]  # pairwise and many columns row-wise, a last-bit difference between the two
    seed /= period
    out[period] = seed
    out[period + 1:] = _ema(x[period + 1:], 1.0 / period, seed)
    return out


def _features_block(bars: list[np.ndarray], params: FeatureParams) -> np.ndarray:
    """(n_symbols, n_bars, n_features) for equal-length bar arrays."""
    p = params
    stacked = np.stack(bars, axis=2)  # (n, 6, S)
    n, _, n_sym = stacked.shape
    names = symbol_feature_names(p)
    out = np.full((n_sym, n, len(names)), np.nan)
    if n == 0:
        return out
    high, low, close, volume = stacked[:, 2], stacked[:, 3], stacked[:, 4], stacked[:, 5]
    cols: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        log_close = np.log(close)
        for k in p.return_horizons:
            cols[f"ret_{k}"] = log_close - _lag(log_close, k)
        ret_1 = log_close - _lag(log_close, 1)
        for w in p.volatility_windows:
            cols[f"rvol_{w}"] = _rolling_mean_std(ret_1, w, ddof=1)[1]

        change = close - _lag(close, 1)
        avg_gain = _wilder(np.where(change > 0, change, 0.0) + 0.0 * change, p.rsi_period)  # keeps NaN
        avg_loss = _wilder(np.where(change < 0, -change, 0.0) + 0.0 * change, p.rsi_period)
        total = avg_gain + avg_loss
        cols[f"rsi_{p.rsi_period}"] = np.where(total > 0, 100.0 * avg_gain / total, 50.0) + 0.0 * total

        ema_fast = _ema(close, 2.0 / (p.macd_fast + 1), close[0])
        ema_slow = _ema(close, 2.0 / (p.macd_slow + 1), close[0])
        macd = ema_fast - ema_slow
        signal = _ema(macd, 2.0 / (p.macd_signal + 1), macd[0])
        cols["macd_line"] = macd / close
        cols["macd_signal"] = signal / close
        cols["macd_hist"] = (macd - signal) / close

        mid, sd = _rolling_mean_std(close, p.bollinger_window, ddof=0)
        width = 2.0 * p.bollinger_k * sd
        flat = sd <= ZERO_WIDTH_REL * np.abs(mid)
        cols[f"bb_pctb_{p.bollinger_window}"] = np.where(
            flat, 0.5, (close - (mid - p.bollinger_k * sd)) / np.where(flat, 1.0, width)) + 0.0 * sd

        prev_close = _lag(close, 1)
        true_range = np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))
        true_range = np.where(np.isnan(prev_close), np.nan, true_range)
        cols[f"atr_pct_{p.atr_period}"] = 100.0 * _wilder(true_range, p.atr_period) / close

        v_mean, v_sd = _rolling_mean_std(volume, p.volume_z_window, ddof=1)
        flat = v_sd <= ZERO_WIDTH_REL * np.abs(v_mean)
        cols[f"volz_{p.volume_z_window}"] = np.where(
            flat, 0.0, (volume - v_mean) / np.where(flat, 1.0, v_sd)) + 0.0 * v_sd

    first = first_valid_rows(p)
    for j, name in enumerate(names):
        out[:, :, j] = cols[name].T
        out[:, :first[name], j] = np.nan  # warm-up rows: never a half-formed value
    return out


def compute_symbol_features(bars, params: FeatureParams = DEFAULT_PARAMS) -> tuple[list[str], np.ndarray]:
    """(names, matrix float64 (n_bars, n_symbol_features)) for one symbol; row t uses bars <= t."""
    arr = as_bars(bars)
    return symbol_feature_names(params), _features_block([arr], params)[0]


def _symbol_features_many(arrays: dict[Hashable, np.ndarray], params: FeatureParams) -> dict[Hashable, np.ndarray]:
    by_length: dict[int, list[Hashable]] = {}
    for key, arr in arrays.items():
        by_length.setdefault(len(arr), []).append(key)
    out: dict[Hashable, np.ndarray] = {}
    for keys in by_length.values():
        block = _features_block([arrays[k] for k in keys], params)
        out.update(zip(keys, block, strict=True))
    return out


def _percentile_rank(panel: np.ndarray) -> np.ndarray:
    """Row-wise percentile rank in [0, 1] among the finite values: (number below + (number
    equal - 1) / 2) / (count - 1), i.e. ties averaged; a value alone is 0.5; NaN where the
    value is not finite. Integer arithmetic on sorted positions: exact, and a row depends on
    that row only."""
    panel = np.where(np.isfinite(panel), panel, np.nan)
    finite = np.isfinite(panel)
    n_rows, n_cols = panel.shape
    if n_cols == 0 or n_rows == 0:
        return panel.copy()
    order = np.argsort(panel, axis=1, kind="stable")  # NaN last
    ordered = np.take_along_axis(panel, order, axis=1)
    idx = np.broadcast_to(np.arange(n_cols), panel.shape)
    new_group = np.ones(panel.shape, dtype=bool)
    new_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # NaN != NaN: NaNs never tie
    group_first = np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
    ends_group = np.ones(panel.shape, dtype=bool)
    ends_group[:, :-1] = new_group[:, 1:]
    group_last = np.minimum.accumulate(np.where(ends_group, idx, n_cols)[:, ::-1], axis=1)[:, ::-1]
    sorted_rank = (group_first + group_last) / 2.0  # 0-based, ties averaged
    rank = np.empty(panel.shape)
    np.put_along_axis(rank, order, sorted_rank, axis=1)
    count = finite.sum(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        pct = np.where(count > 1, rank / (count - 1), 0.5)
    return np.where(finite, pct, np.nan)


def _sector_peer_mean(excess: np.ndarray, sector_of: list[str | None]) -> np.ndarray:
    """Per (timestamp, symbol): the mean of the finite values of the symbol's sector peers at
    that timestamp; 0 without peers; NaN when the peers exist but none is finite yet. Summed
    peer by peer in a fixed order, so a row depends on its own timestamp only."""
    n_rows, n_cols = excess.shape
    out = np.zeros((n_rows, n_cols))
    finite = np.isfinite(excess)
    values = np.where(finite, excess, 0.0)
    for s in range(n_cols):
        mates = [j for j in range(n_cols) if j != s and sector_of[s] is not None and sector_of[j] == sector_of[s]]
        if not mates:
            continue
        total, count = np.zeros(n_rows), np.zeros(n_rows)
        for j in mates:
            total += values[:, j]
            count += finite[:, j]
        with np.errstate(all="ignore"):
            out[:, s] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def compute_universe_features(bars_by_symbol: Mapping[Hashable, np.ndarray], params: FeatureParams = DEFAULT_PARAMS,
                              sectors: Mapping[Hashable, str] | None = None
                              ) -> tuple[list[str], dict[Hashable, np.ndarray]]:
    """(names, {symbol: matrix float64 (n_bars of that symbol, n_features)}): the per-symbol
    features followed by the cross-sectional ones, each row aligned with the symbol's own bars.
    `sectors` ({symbol: sector}) groups the symbols for sector_peer_ret_12; a symbol missing
    from it has no peers.

    Timestamps are the union of all symbols' open times; at each, the symbols with a bar there
    form the cross-section. mkt_ret_12 sums over the last 12 timestamps of that union."""
    p = params
    arrays = {k: as_bars(b) for k, b in bars_by_symbol.items()}
    names = feature_names(p)
    if not arrays:
        return names, {}
    per_symbol = _symbol_features_many(arrays, p)
    keys = list(arrays)
    times = {k: arrays[k][:, 0].astype(np.int64) for k in keys}
    grid = np.unique(np.concatenate(list(times.values())))
    positions = {k: np.searchsorted(grid, times[k]) for k in keys}
    sym_names = symbol_feature_names(p)
    i_ret = sym_names.index(f"ret_{p.cs_rank_return_horizon}")
    i_vol = sym_names.index(f"rvol_{p.cs_rank_volatility_window}")

    def panel(values_by_symbol: dict[Hashable, np.ndarray]) -> np.ndarray:
        """(n_timestamps, n_symbols); NaN where a symbol has no bar or no finite value."""
        out = np.full((len(grid), len(keys)), np.nan)
        for s, k in enumerate(keys):
            out[positions[k], s] = values_by_symbol[k]
        return np.where(np.isfinite(out), out, np.nan)

    with np.errstate(all="ignore"):
        one_bar = {k: np.r_[np.nan, np.diff(np.log(arrays[k][:, 4]))] if len(arrays[k]) else np.empty(0)
                   for k in keys}
    rank_ret = _percentile_rank(panel({k: v[:, i_ret] for k, v in per_symbol.items()}))
    rank_vol = _percentile_rank(panel({k: v[:, i_vol] for k, v in per_symbol.items()}))
    # Only finite returns count: one symbol's bad bar must not move everyone's market factor.
    ret_1 = panel(one_bar)
    have = np.isfinite(ret_1).sum(axis=1)
    total = np.zeros(len(grid))
    for s in range(len(keys)):  # symbol by symbol, in a fixed order, whatever the panel's shape
        total += np.where(np.isfinite(ret_1[:, s]), ret_1[:, s], 0.0)
    with np.errstate(all="ignore"):
        market = np.where(have > 0, total / np.maximum(have, 1), np.nan)
    market_sum = _window_sum(market[:, None], p.market_sum_bars)[:, 0]
    peer = _sector_peer_mean(panel({k: v[:, i_ret] for k, v in per_symbol.items()}) - market_sum[:, None],
                             [(sectors or {}).get(k) for k in keys])

    out = {}
    for s, k in enumerate(keys):
        pos = positions[k]
        n_sym = per_symbol[k].shape[1]
        row = np.empty((len(pos), len(names)))
        row[:, :n_sym] = per_symbol[k]
        row[:, n_sym:] = np.column_stack([rank_ret[pos, s], rank_vol[pos, s], market[pos], market_sum[pos],
                                          peer[pos, s]])
        out[k] = row
    return names, out
