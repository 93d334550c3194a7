"""The universe scanner's pure core: rank symbols by liquidity, volatility and opportunity.

Inputs are bars [open_time_ms, open, high, low, close, volume] per symbol (oldest first).
Measures, per symbol, over the lookback window:
- liquidity: quote volume (sum of close x volume) per day;
- volatility: ATR % (Wilder's 14-bar ATR over the last close) and realized volatility
  (std of log returns, annualized over 365 days of bars);
- opportunity: trend strength, the t-statistic of a least-squares slope of log price over
  the window (how far the drift stands above the noise), and a model's confidence when one
  is given;
- spread: the Corwin-Schultz (2012) high-low estimator, so the max-spread filter works from
  bars alone when no order book is at hand.
Filters drop a symbol with a stated reason; the score is a weighted mean of cross-sectional
percentile ranks, so no raw unit dominates.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

ATR_PERIOD = 14
MINUTES_PER_YEAR = 365 * 24 * 60


@dataclass(frozen=True)
class ScanParams:
    bar_minutes: int = 5
    lookback_bars: int = 288  # one day of 5m bars
    min_history_bars: int = 288
    min_quote_volume_usd: float = 1_000_000.0  # per day
    max_spread_pct: float = 0.5
    weight_liquidity: float = 0.4
    weight_volatility: float = 0.3
    weight_opportunity: float = 0.3

    def __post_init__(self):
        if self.lookback_bars < ATR_PERIOD + 2:
            raise ValueError(f"lookback_bars must be at least {ATR_PERIOD + 2}")
        if min(self.weight_liquidity, self.weight_volatility, self.weight_opportunity) < 0:
            raise ValueError("weights must be non-negative")


@dataclass
class SymbolMetrics:
    symbol: str
    history_bars: int
    quote_volume_usd: float = 0.0
    atr_pct: float = 0.0
    realized_volatility: float = 0.0
    trend_strength: float = 0.0
    spread_pct: float = 0.0
    model_confidence: float | None = None
    score: float = 0.0
    rank: int | None = None
    excluded: str = ""  # why a filter dropped it ("" when it passed)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScanResult:
    ranked: list[SymbolMetrics]
    excluded: list[SymbolMetrics] = field(default_factory=list)

    def top(self, n: int) -> list[SymbolMetrics]:
        return self.ranked[:n]


def atr_pct(bars: np.ndarray, period: int = ATR_PERIOD) -> float:
    high, low, close = bars[:, 2], bars[:, 3], bars[:, 4]
    prev_close = np.r_[close[0], close[:-1]]
    tr = np.maximum.reduce([high - low, np.abs(high - prev_close), np.abs(low - prev_close)])
    atr = tr[:period].mean()
    for x in tr[period:]:  # Wilder's smoothing
        atr += (x - atr) / period
    return float(100.0 * atr / close[-1])


def realized_volatility(bars: np.ndarray, bar_minutes: int) -> float:
    r = np.diff(np.log(bars[:, 4]))
    if len(r) < 2:
        return 0.0
    return float(r.std(ddof=1) * math.sqrt(MINUTES_PER_YEAR / bar_minutes))


def trend_strength(bars: np.ndarray) -> float:
    """t-statistic of the slope of log(close) on time; sign gives direction."""
    y = np.log(bars[:, 4])
    n = len(y)
    if n < 3:
        return 0.0
    x = np.arange(n, dtype=float)
    x -= x.mean()
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    resid = y - y.mean() - slope * x
    se = math.sqrt(float((resid**2).sum()) / (n - 2) / float((x * x).sum()))
    return slope / se if se > 0 else 0.0


def corwin_schultz_spread_pct(bars: np.ndarray) -> float:
    """Corwin-Schultz bid-ask spread estimate in %: the two-day estimates are averaged first and
    the mean floored at 0 (flooring each one first biases the mean upwards, badly so on coarse
    bars where volatility dominates the high-low range)."""
    h, lo = bars[:, 2], bars[:, 3]
    if len(h) < 3:
        return 0.0
    beta = np.log(h[1:] / lo[1:]) ** 2 + np.log(h[:-1] / lo[:-1]) ** 2
    gamma = np.log(np.maximum(h[1:], h[:-1]) / np.minimum(lo[1:], lo[:-1])) ** 2
    k = 3 - 2 * math.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    spread = 2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha))
    return float(100.0 * max(float(spread.mean()), 0.0))


def _pct_rank(values: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.ones(1)
    order = values.argsort(kind="stable").argsort(kind="stable")
    return order / (len(values) - 1)


def measure(symbol: str, bars: np.ndarray, params: ScanParams, model_confidence: float | None = None) -> SymbolMetrics:
    bars = np.asarray(bars, dtype=float)
    m = SymbolMetrics(symbol=symbol, history_bars=len(bars), model_confidence=model_confidence)
    if len(bars) < params.min_history_bars or len(bars) < ATR_PERIOD + 2:
        m.excluded = f"history {len(bars)} bars < minimum {max(params.min_history_bars, ATR_PERIOD + 2)}"
        return m
    if not np.isfinite(bars[:, 1:]).all() or (bars[:, 1:5] <= 0).any():
        m.excluded = "non-finite or non-positive prices in history"
        return m
    w = bars[-params.lookback_bars:]
    days = len(w) * params.bar_minutes / (24 * 60)
    m.quote_volume_usd = float((w[:, 4] * w[:, 5]).sum() / days)
    m.atr_pct = atr_pct(w)
    m.realized_volatility = realized_volatility(w, params.bar_minutes)
    m.trend_strength = trend_strength(w)
    m.spread_pct = corwin_schultz_spread_pct(w)
    if m.quote_volume_usd < params.min_quote_volume_usd:
        m.excluded = f"quote volume {m.quote_volume_usd:,.0f} USD/day < minimum {params.min_quote_volume_usd:,.0f}"
    elif m.spread_pct > params.max_spread_pct:
        m.excluded = f"spread {m.spread_pct:.3f}% > maximum {params.max_spread_pct}%"
    return m


def rank(metrics: list[SymbolMetrics], params: ScanParams) -> ScanResult:
    passed = [m for m in metrics if not m.excluded]
    excluded = [m for m in metrics if m.excluded]
    if passed:
        liq = _pct_rank(np.log1p([m.quote_volume_usd for m in passed]))
        vol = (_pct_rank(np.array([m.atr_pct for m in passed]))
               + _pct_rank(np.array([m.realized_volatility for m in passed]))) / 2
        trend = _pct_rank(np.abs([m.trend_strength for m in passed]))
        conf = [m.model_confidence for m in passed]
        if all(c is not None for c in conf):
            trend = (trend + _pct_rank(np.array(conf, dtype=float))) / 2
        total_w = params.weight_liquidity + params.weight_volatility + params.weight_opportunity or 1.0
        scores = (params.weight_liquidity * liq + params.weight_volatility * vol
                  + params.weight_opportunity * trend) / total_w
        for m, s in zip(passed, scores, strict=True):
            m.score = round(float(s), 6)
        passed.sort(key=lambda m: (-m.score, m.symbol))
        for i, m in enumerate(passed, start=1):
            m.rank = i
    return ScanResult(ranked=passed, excluded=sorted(excluded, key=lambda m: m.symbol))
