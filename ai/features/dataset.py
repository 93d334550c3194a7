"""Training samples and inference rows from bars. Pure, except `bars_from_db`/`dataset_from_db`.

A sample is (symbol, bar t): its tabular row is the feature row at t (compute.py), its sequence
window the last `lookback` rows of the sequence channels up to and including t, its label the
direction over the next `horizon` bars (labels.py). Samples whose label falls inside the
neutral band, or whose future is not known yet, are left out.

Symbols are left out, each with its reason in `Dataset.excluded` (the others proceed), when
they have too little history or carry a NaN/infinite feature after the warm-up (a bad bar:
the validator's message names feature, row and time).

Memory: X_seq holds lookback x channels floats per sample: 64 x 3 x 4 B = 768 B, so the full
60-day demo market (42 x 17,280 bars) needs ~0.5 GB; `sample_every` keeps one bar in k.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ai.features.compute import (
    DEFAULT_LOOKBACK,
    DEFAULT_PARAMS,
    FEATURE_VERSION,
    FeatureParams,
    FeatureValueError,
    as_bars,
    compute_universe_features,
    feature_set_hash,
    first_valid_rows,
    insufficient_history,
    min_history_bars,
    validate_features,
)
from ai.features.labels import DEFAULT_BAND, DEFAULT_HORIZON_BARS, forward_log_return, labels_from_returns

# dataset_from_db with n_bars=None reads everything: 1,000,000 5m bars is 9.5 years per symbol.
ALL_BARS = 1_000_000


@dataclass(frozen=True)
class Dataset:
    """Samples ordered by (t_ms, symbol). n = samples, F = features, L = lookback, C = channels."""

    X_tab: np.ndarray  # (n, F) float32, columns = feature_names
    X_seq: np.ndarray  # (n, L, C) float32, oldest first, channels = seq_channels; last row is bar t
    y: np.ndarray  # (n,) int64, 1 = up beyond the band, 0 = down beyond it
    t_ms: np.ndarray  # (n,) int64, open time of bar t (the features are known at its close)
    symbol: np.ndarray  # (n,) str
    label_end_ms: np.ndarray  # (n,) int64, open time of bar t + horizon (the last bar the label reads)
    fwd_log_return: np.ndarray  # (n,) float64, log(close[t + horizon] / close[t]), for evaluation
    feature_names: tuple[str, ...]
    seq_channels: tuple[str, ...]
    feature_version: str
    feature_hash: str
    horizon: int
    lookback: int
    band: float
    excluded: dict[str, str] = field(default_factory=dict)  # symbol -> why it has no samples

    def __post_init__(self):
        n = len(self.y)
        shapes = {"X_tab": (n, len(self.feature_names)), "X_seq": (n, self.lookback, len(self.seq_channels))}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        for name in ("t_ms", "symbol", "label_end_ms", "fwd_log_return"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.y)

    def metadata(self) -> dict:
        """What a model records about the data it was trained on."""
        return {
            "feature_version": self.feature_version,
            "feature_hash": self.feature_hash,
            "feature_names": list(self.feature_names),
            "seq_channels": list(self.seq_channels),
            "horizon_bars": self.horizon,
            "lookback_bars": self.lookback,
            "band": self.band,
            "n_samples": len(self),
            "first_t_ms": int(self.t_ms.min()) if len(self) else None,
            "last_t_ms": int(self.t_ms.max()) if len(self) else None,
            "last_label_end_ms": int(self.label_end_ms.max()) if len(self) else None,
            "symbols": sorted(set(self.symbol.tolist())),
            "up_fraction": float(self.y.mean()) if len(self) else None,
        }

    def take(self, idx: np.ndarray) -> Dataset:
        """The samples at `idx` (e.g. a split's train or test indices), same metadata."""
        return Dataset(self.X_tab[idx], self.X_seq[idx], self.y[idx], self.t_ms[idx], self.symbol[idx],
                       self.label_end_ms[idx], self.fwd_log_return[idx], self.feature_names, self.seq_channels,
                       self.feature_version, self.feature_hash, self.horizon, self.lookback, self.band,
                       dict(self.excluded))


@dataclass(frozen=True)
class LatestRows:
    """The inference input at each symbol's last bar; m = symbols that have one."""

    symbols: tuple[str, ...]  # (m,)
    t_ms: np.ndarray  # (m,) int64, open time of the last bar
    X_tab: np.ndarray  # (m, F) float32
    X_seq: np.ndarray  # (m, L, C) float32
    feature_names: tuple[str, ...]
    seq_channels: tuple[str, ...]
    feature_version: str
    feature_hash: str
    lookback: int
    skipped: dict[str, str]  # symbol -> why there is no row (too little history, NaN, stale)

    def row(self, symbol: str) -> tuple[np.ndarray, np.ndarray] | str:
        """(feature row, sequence window) of `symbol`, or the reason there is none."""
        if symbol in self.skipped:
            return self.skipped[symbol]
        if symbol not in self.symbols:
            return "no bars"
        i = self.symbols.index(symbol)
        return self.X_tab[i], self.X_seq[i]


def _seq_windows(channels: np.ndarray, rows: np.ndarray, lookback: int) -> np.ndarray:
    """(len(rows), lookback, C): channels[r - lookback + 1 : r + 1] for each r (all r >= lookback - 1)."""
    windows = np.lib.stride_tricks.sliding_window_view(channels, lookback, axis=0)  # (n - L + 1, C, L)
    return windows[rows - lookback + 1].transpose(0, 2, 1).astype(np.float32)


def _bar_ms(arrays: Mapping[Hashable, np.ndarray]) -> int:
    steps = [np.diff(a[:, 0]).min() for a in arrays.values() if len(a) > 1]
    return int(min(steps)) if steps else 1


def build_dataset(bars_by_symbol: Mapping[Hashable, np.ndarray], *, horizon: int = DEFAULT_HORIZON_BARS,
                  lookback: int = DEFAULT_LOOKBACK, band: float = DEFAULT_BAND,
                  params: FeatureParams = DEFAULT_PARAMS, sample_every: int = 1,
                  sectors: Mapping[Hashable, str] | None = None) -> Dataset:
    """All labelled samples of every symbol with enough clean history (see the module doc).
    `sample_every` = k keeps one bar in k: those whose open time // bar length is a multiple of
    k (the same timestamps for every symbol)."""
    if horizon < 1 or lookback < 1 or sample_every < 1:
        raise ValueError("horizon, lookback and sample_every must be at least 1")
    arrays = {str(k): as_bars(b) for k, b in bars_by_symbol.items()}
    if len(arrays) != len(bars_by_symbol):
        raise ValueError("symbol keys must stay distinct as strings")
    names, features = compute_universe_features(arrays, params, _str_keys(sectors))
    channel_cols = [names.index(c) for c in params.seq_channels]
    need = min_history_bars(lookback, params)
    tab_first = max(first_valid_rows(params).values())
    seq_first = need - lookback  # first row of the first complete sequence window
    excluded = {str(k): v for k, v in insufficient_history(arrays, lookback=lookback, extra_bars=horizon,
                                                           params=params).items()}
    bar_ms = _bar_ms(arrays)
    parts = []
    for sym, bars in arrays.items():
        if sym in excluded:
            continue
        feats, t = features[sym], bars[:, 0].astype(np.int64)
        fwd = forward_log_return(bars[:, 4], horizon)
        label = labels_from_returns(fwd, band)
        rows = np.arange(need - 1, len(bars))
        keep = np.isfinite(label[rows])
        if sample_every > 1:
            keep &= (t[rows] // bar_ms) % sample_every == 0
        rows = rows[keep]
        try:
            # Every row after the warm-up, sample or not: a bad bar poisons what follows it.
            validate_features(feats[tab_first:], names, symbol=sym, t_ms=t[tab_first:], row_offset=tab_first)
            validate_features(feats[seq_first:, channel_cols], list(params.seq_channels), symbol=sym,
                              t_ms=t[seq_first:], row_offset=seq_first)
            x_tab = feats[rows].astype(np.float32)
            validate_features(x_tab, names, symbol=sym, t_ms=t[rows])  # beyond float32's range
        except FeatureValueError as exc:
            excluded[sym] = str(exc)
            continue
        if not len(rows):
            excluded[sym] = "no sample outside the neutral band"
            continue
        parts.append({
            "X_tab": x_tab,
            "X_seq": _seq_windows(feats[:, channel_cols], rows, lookback),
            "y": label[rows].astype(np.int64),
            "t_ms": t[rows],
            "symbol": np.full(len(rows), sym),
            "label_end_ms": t[rows + horizon],
            "fwd_log_return": fwd[rows],
        })
    if parts:
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        idx = np.lexsort((cat["symbol"], cat["t_ms"]))
        cat = {k: v[idx] for k, v in cat.items()}
    else:
        cat = {"X_tab": np.empty((0, len(names)), np.float32),
               "X_seq": np.empty((0, lookback, len(channel_cols)), np.float32),
               "y": np.empty(0, np.int64), "t_ms": np.empty(0, np.int64), "symbol": np.empty(0, dtype=str),
               "label_end_ms": np.empty(0, np.int64), "fwd_log_return": np.empty(0)}
    validate_features(cat["X_tab"], names)  # the last guard before any model
    return Dataset(
        X_tab=cat["X_tab"], X_seq=cat["X_seq"], y=cat["y"], t_ms=cat["t_ms"], symbol=cat["symbol"],
        label_end_ms=cat["label_end_ms"], fwd_log_return=cat["fwd_log_return"], feature_names=tuple(names),
        seq_channels=tuple(params.seq_channels), feature_version=FEATURE_VERSION,
        feature_hash=feature_set_hash(params), horizon=horizon, lookback=lookback, band=band,
        excluded=dict(sorted(excluded.items())),
    )


def _str_keys(sectors: Mapping[Hashable, str] | None) -> dict[str, str] | None:
    return None if sectors is None else {str(k): v for k, v in sectors.items()}


def latest_rows(bars_by_symbol: Mapping[Hashable, np.ndarray], lookback: int = DEFAULT_LOOKBACK,
                params: FeatureParams = DEFAULT_PARAMS, sectors: Mapping[Hashable, str] | None = None) -> LatestRows:
    """Per symbol, the feature row and sequence window at its LAST bar, for inference; or, in
    `skipped`, why there is none: too little history, a NaN/infinite value (named), or a last
    bar older than the universe's latest. Pass about `INFERENCE_BARS` bars per symbol."""
    arrays = {str(k): as_bars(b) for k, b in bars_by_symbol.items()}
    names, features = compute_universe_features(arrays, params, _str_keys(sectors))
    channel_cols = [names.index(c) for c in params.seq_channels]
    skipped = {str(k): v for k, v in insufficient_history(arrays, lookback=lookback, params=params).items()}
    latest = max((int(a[-1, 0]) for a in arrays.values() if len(a)), default=None)
    symbols, t_last, tab, seq = [], [], [], []
    for sym, bars in arrays.items():
        if sym in skipped:
            continue
        feats = features[sym]
        t = int(bars[-1, 0])
        if t != latest:
            skipped[sym] = f"stale: last bar at t_ms={t}, the universe's latest is t_ms={latest}"
            continue
        row = feats[-1:].astype(np.float32)  # checked after the cast: float32 overflows at 3.4e38
        window = feats[-lookback:, channel_cols].astype(np.float32)
        try:
            validate_features(row, names, symbol=sym, t_ms=bars[-1:, 0], row_offset=len(bars) - 1)
            validate_features(window, list(params.seq_channels), symbol=sym, t_ms=bars[-lookback:, 0],
                              row_offset=len(bars) - lookback)
        except FeatureValueError as exc:
            skipped[sym] = str(exc)
            continue
        symbols.append(sym)
        t_last.append(t)
        tab.append(row[0])
        seq.append(window)
    n_ch = len(channel_cols)
    return LatestRows(
        symbols=tuple(symbols), t_ms=np.array(t_last, dtype=np.int64),
        X_tab=np.array(tab, dtype=np.float32).reshape(len(symbols), len(names)),
        X_seq=np.array(seq, dtype=np.float32).reshape(len(symbols), lookback, n_ch),
        feature_names=tuple(names), seq_channels=tuple(params.seq_channels), feature_version=FEATURE_VERSION,
        feature_hash=feature_set_hash(params), lookback=lookback, skipped=dict(sorted(skipped.items())),
    )


# --- the database edge ------------------------------------------------------------------------


def bars_from_db(exchange: str = "paper", timeframe: str = "5m", symbols: list[str] | None = None,
                 n_bars: int | None = None) -> dict[str, np.ndarray]:
    """{unified symbol: bars} of the active symbols on `exchange` (or the named ones; an
    unknown name raises BadSymbol), the last `n_bars` each (all when None)."""
    from trading.marketdata import selectors
    from trading.models import Symbol

    if symbols is None:
        rows = list(Symbol.objects.filter(exchange=exchange, active=True).order_by("symbol"))
    else:
        rows = selectors.resolve_symbols(symbols, exchange)
    raw = selectors.last_bars([s.pk for s in rows], timeframe, n_bars or ALL_BARS)
    return {s.symbol: raw[s.pk] for s in rows}


def sectors_from_db(exchange: str = "paper", symbols: list[str] | None = None) -> dict[str, str]:
    """{unified symbol: sector} of `exchange`'s symbols (those named, or all); '' is no sector."""
    from trading.models import Symbol

    qs = Symbol.objects.filter(exchange=exchange)
    if symbols is not None:
        qs = qs.filter(symbol__in=symbols)
    return {sym: sector for sym, sector in qs.values_list("symbol", "sector") if sector}


def dataset_from_db(exchange: str = "paper", timeframe: str = "5m", symbols: list[str] | None = None,
                    n_bars: int | None = None, **build_kwargs) -> Dataset:
    """`build_dataset` over the stored candles and the symbols' sectors (keyword arguments go
    to build_dataset)."""
    bars = bars_from_db(exchange, timeframe, symbols, n_bars)
    return build_dataset(bars, sectors=sectors_from_db(exchange, list(bars)), **build_kwargs)
