"""The AI ensemble as a strategy: the serving models' vote, bar by bar, behind the Strategy interface.

At each bar with a clean feature row (ai.features: the row at t and the sequence window
ending at t, both read only bars <= t) every serving, non-quarantined model of the inference
engine gives P(up); `ai.ensemble.vote` combines them with the engine's weights exactly as a
live inference pass does. BUY opens long (+1), SELL short (-1), HOLD nothing; the confidence
is the vote's. The strategy gives no exits of its own: positions it opens are closed by the
position monitor's stops and by the opposite signal, as in live trading.

Lookahead: the models themselves are a view of the past. In a backtest this strategy must be
given models trained only on data before the window it is run on (an engine holding those
models, `engine=`); given today's champions, every bar before their training end is an
in-sample answer. The backtester enforces this; this class cannot tell when its models were
trained.

The features are computed over the bars given, as one symbol's universe: the cross-sectional
columns (ranks, market and sector factors) then see only this symbol, where a live pass sees
the whole universe. Pass `universe` (other symbols' bars) to reproduce the live rows.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ai.ensemble import DEFAULT_MIN_CONFIDENCE, vote
from ai.features.compute import DEFAULT_LOOKBACK, DEFAULT_PARAMS, compute_universe_features, min_history_bars
from ai.strategies.base import Param, Signals, Strategy
from core.enums import SignalAction

PROB_PREFIX = "p_up_"
_SYMBOL = "__strategy_symbol__"


class EnsembleStrategy(Strategy):
    name = "ensemble"
    timeframe = "5m"
    # vote() needs a threshold strictly above a coin flip.
    params = {"min_confidence": Param(0.51, 1.0, DEFAULT_MIN_CONFIDENCE, float)}

    def __init__(self, params: Mapping[str, object] | None = None, *, engine=None,
                 universe: Mapping[str, np.ndarray] | None = None, sectors: Mapping[str, str] | None = None,
                 symbol: str = _SYMBOL):
        super().__init__(params)
        self._engine = engine
        self.universe = dict(universe or {})
        self.sectors = dict(sectors or {})
        self.symbol = symbol

    @property
    def startup_bars(self) -> int:
        return min_history_bars(DEFAULT_LOOKBACK, DEFAULT_PARAMS) - 1

    def engine(self):
        if self._engine is None:
            from ai.inference import engine

            self._engine = engine()
            self._engine.refresh()
        return self._engine

    def indicators(self, bars: np.ndarray) -> dict[str, np.ndarray]:
        from ai.features.dataset import _seq_windows

        eng = self.engine()
        if not eng.serving:
            raise ValueError("no model serves: the ensemble has nothing to vote with")
        n = len(bars)
        # Other symbols are cut at this series' last bar, so a cut series never sees their future.
        end = bars[-1, 0] if n else -np.inf
        universe = {s: b[b[:, 0] <= end] for s, b in self.universe.items() if s != self.symbol}
        universe[self.symbol] = bars
        names, features = compute_universe_features(universe, DEFAULT_PARAMS, self.sectors or None)
        feats = features[self.symbol]
        cols = [names.index(c) for c in DEFAULT_PARAMS.seq_channels]
        rows = np.arange(min_history_bars(DEFAULT_LOOKBACK, DEFAULT_PARAMS) - 1, n)
        out = {f"{PROB_PREFIX}{s.version.model_type}": np.full(n, np.nan) for s in eng.serving}
        if len(rows):
            x_tab = feats[rows].astype(np.float32)
            x_seq = _seq_windows(feats[:, cols], rows, DEFAULT_LOOKBACK)
            ok = np.isfinite(x_tab).all(axis=1) & np.isfinite(x_seq).all(axis=(1, 2))
            rows, x_tab, x_seq = rows[ok], x_tab[ok], x_seq[ok]
        if len(rows):
            for s in eng.serving:
                x = x_tab if s.forecaster.input_kind == "tab" else x_seq
                out[f"{PROB_PREFIX}{s.version.model_type}"][rows] = np.asarray(s.forecaster.predict_proba_up(x),
                                                                               dtype=float)
        return out

    def signals(self, bars: np.ndarray, indicators: dict[str, np.ndarray]) -> Signals:
        eng = self.engine()
        weights = eng.weights()
        quarantined = set(getattr(eng, "quarantined", {}) or {})
        probs = {k[len(PROB_PREFIX):]: v for k, v in indicators.items() if k.startswith(PROB_PREFIX)}
        n = len(bars)
        entry = np.zeros(n, dtype=np.int8)
        confidence = np.zeros(n)
        threshold = float(self.p["min_confidence"])
        direction = {SignalAction.BUY: 1, SignalAction.SELL: -1}
        for t in range(n):
            preds = {m: float(p[t]) for m, p in probs.items() if m not in quarantined and np.isfinite(p[t])}
            if not preds:
                continue
            v = vote(preds, weights, min_confidence_threshold=threshold)
            if v.has_signal:
                entry[t] = direction.get(v.action, 0)
                confidence[t] = v.confidence
        return Signals(entry=entry, exit=np.zeros(n, dtype=bool), confidence=confidence)
