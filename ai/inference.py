"""Inference: the champions, loaded once per worker process, over the universe in one pass.

`run_inference()` (task `ai.inference.run`, inference queue, every bar from beat) reads the
last INFERENCE_BARS bars of every active symbol, builds the feature rows and windows in one
batch (ai.features.latest_rows), asks every serving model for P(up) in one batched call,
votes (ai.ensemble) and publishes, in one transaction, `model.prediction` per model and
symbol and `signal.generated` per symbol that has a vote. A symbol with too little history
or a non-finite feature gets no signal and its reason is logged; the others proceed. A model
that fails or exceeds `PREDICTION_TIMEOUT_SECONDS` is dropped from the vote (logged, module
DEGRADED in /health); with no model left there is no signal and one `system.alert`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import transaction

from ai import registry
from ai.ensemble import DEFAULT_MIN_CONFIDENCE, PRIOR_WEIGHT, vote
from core.enums import Mode
from qtweb.events import EventType
from qtweb.events.bus import publish_many
from qtweb.faults import fail_point
from qtweb.logging import get_logger

log = get_logger(__name__)

# System modes (risk's, published as system.mode_changed) as inference sees them: HALTED
# publishes no signals; REDUCE_ONLY publishes signals but sizes none (nothing new opens);
# SHADOW and NORMAL run fully (in SHADOW the execution layer records instead of trading).
MODE_CACHE_KEY = "ai:system_mode"
MODE_CACHE_SECONDS = 30 * 24 * 3600


def current_mode() -> str:
    from django.core.cache import cache

    return cache.get(MODE_CACHE_KEY) or Mode.NORMAL


def set_mode(mode: str) -> None:
    from django.core.cache import cache

    cache.set(MODE_CACHE_KEY, mode, timeout=MODE_CACHE_SECONDS)


# A model answering slower than this for the whole batch is left out of the vote (the
# design's prediction_timeout_seconds). Checked after the call: a Python call cannot be interrupted
# safely, so a slow model costs one pass and is then marked DEGRADED.
PREDICTION_TIMEOUT_SECONDS = 2.0


@dataclass
class SymbolSignal:
    symbol: str
    t_ms: int
    predictions: dict[str, float]
    vote: object | None
    reason: str = ""
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # the threshold the vote was taken at
    # The vote the meta-strategy's profile set aside (it opens nothing in this context): no signal.
    stood_aside_from: object | None = None


@dataclass
class InferenceResult:
    signals: dict[str, SymbolSignal] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    model_latency_ms: dict[str, float] = field(default_factory=dict)
    dropped_models: dict[str, str] = field(default_factory=dict)


class InferenceEngine:
    """The serving champions of one process; reloads when the registry's champions change."""

    def __init__(self) -> None:
        import threading

        self.serving: list[registry.ServingModel] = []
        self.problems: dict[str, str] = {}
        # Champions in quarantine (analytics' learning manager): they predict, they do not vote.
        self.quarantined: dict[str, str] = {}
        # Passes in a row each model failed / answered: self-healing quarantines a model that keeps
        # failing and releases it once it answers again (analytics/healing).
        self.failure_streak: dict[str, int] = {}
        self.answer_streak: dict[str, int] = {}
        self._loaded_ids: tuple[int, ...] | None = None
        # At most MAX_PARALLEL_PREDICTIONS passes at once in this process (RPC threads, tasks).
        self._slots = threading.BoundedSemaphore(max(1, int(settings.MAX_PARALLEL_PREDICTIONS)))

    def invalidate(self) -> None:
        """Reload champions on the next pass (policy.updated, a promotion elsewhere)."""
        self._loaded_ids = None

    def refresh(self) -> None:
        from ai.features.compute import FEATURE_VERSION, feature_set_hash

        current = registry.champions()
        ids = tuple(m.pk for m in current)
        self.quarantined = {m.model_type: m.quarantine_reason or "quarantined" for m in current
                            if m.quarantined_at is not None}
        if ids != self._loaded_ids:
            self.serving, self.problems = registry.load_champions(feature_version=FEATURE_VERSION,
                                                                  feature_hash=feature_set_hash())
            self._loaded_ids = ids
            log.info("champions loaded", serving=[s.version.model_type for s in self.serving], missing=self.problems)

    def weights(self) -> dict[str, float]:
        """Each champion's recent out-of-sample skill: from its realized outcomes once it has
        enough (ai/outcomes.py), until then from its validation Brier score (1 - Brier/0.25)."""
        from ai.ensemble import MIN_OUTCOMES
        from ai.outcomes import load_tracker

        tracker = load_tracker()
        out = {}
        for s in self.serving:
            t = s.version.model_type
            if len(tracker.outcomes.get(t, ())) >= MIN_OUTCOMES:
                out[t] = tracker.weight(t)
                continue
            brier = s.version.metrics.get("brier")
            out[t] = max(0.0, 1.0 - brier / 0.25) if isinstance(brier, int | float) else PRIOR_WEIGHT
        return out

    def predict(self, rows) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, str]]:
        """One batched call per model over all symbols: ({model: P(up) per row}, latency, dropped)."""
        probs, latency, dropped = {}, {}, {}
        if not self._slots.acquire(timeout=PREDICTION_TIMEOUT_SECONDS):
            return probs, latency, {s.version.model_type: "max_parallel_predictions reached" for s in self.serving}
        try:
            return self._predict(rows, probs, latency, dropped)
        finally:
            self._slots.release()

    def _predict(self, rows, probs, latency, dropped):
        for s in self.serving:
            t = s.version.model_type
            X = rows.X_tab if s.forecaster.input_kind == "tab" else rows.X_seq
            t0 = time.perf_counter()
            try:
                fail_point("ai", f"predict:{t}", enabled=getattr(settings, "AI_FAULTS_ENABLED", False))
                p = np.asarray(s.forecaster.predict_proba_up(X), dtype=float)
            except Exception as exc:  # one model failing never stops the others
                dropped[t] = f"{type(exc).__name__}: {exc}"
                continue
            elapsed = time.perf_counter() - t0
            latency[t] = elapsed * 1000
            if elapsed > PREDICTION_TIMEOUT_SECONDS:
                dropped[t] = f"took {elapsed:.2f}s > {PREDICTION_TIMEOUT_SECONDS}s"
                continue
            probs[t] = p
        return probs, latency, dropped


def _report_model_health(eng: InferenceEngine, dropped: dict[str, str]) -> None:
    """Each model is a module of the ai service in /health: DEGRADED when it is missing,
    refused at load or dropped from the last vote."""
    from qtweb.health.status import report_module

    for s in eng.serving:
        t = s.version.model_type
        if t in dropped:
            eng.failure_streak[t] = eng.failure_streak.get(t, 0) + 1
            eng.answer_streak[t] = 0
        else:
            eng.answer_streak[t] = eng.answer_streak.get(t, 0) + 1
            eng.failure_streak[t] = 0
        facts = {"model_version_id": s.version.pk, "failure_streak": eng.failure_streak[t],
                 "answer_streak": eng.answer_streak[t], "quarantined": t in eng.quarantined,
                 "error": dropped.get(t, "")}
        if t in dropped:
            report_module("ai-service", f"model:{t}", "DEGRADED", f"dropped from the vote: {dropped[t]}", **facts)
        elif t in eng.quarantined:
            report_module("ai-service", f"model:{t}", "DEGRADED", f"quarantined: {eng.quarantined[t]}", **facts)
        else:
            report_module("ai-service", f"model:{t}", "HEALTHY", f"v{s.version.version} serving", **facts)
    for t, reason in eng.problems.items():
        report_module("ai-service", f"model:{t}", "DEGRADED", reason)


_engine: InferenceEngine | None = None


def engine() -> InferenceEngine:
    global _engine
    if _engine is None:
        _engine = InferenceEngine()
    return _engine


def infer(bars_by_symbol: dict[str, np.ndarray], *, eng: InferenceEngine | None = None,
          min_confidence: float = DEFAULT_MIN_CONFIDENCE, sectors: dict[str, str] | None = None,
          min_confidence_by_symbol: dict[str, float] | None = None) -> InferenceResult:
    from ai.features.dataset import latest_rows

    eng = eng or engine()
    eng.refresh()
    rows = latest_rows(bars_by_symbol, sectors=sectors)
    result = InferenceResult(skipped=dict(rows.skipped))
    for sym, reason in rows.skipped.items():
        log.info("no signal for symbol", symbol=sym, reason=reason)
    if not rows.symbols:
        return result
    probs, result.model_latency_ms, result.dropped_models = eng.predict(rows)
    for t, reason in result.dropped_models.items():
        log.error("model dropped from the vote", model_type=t, reason=reason)
    _report_model_health(eng, result.dropped_models)
    weights = eng.weights()
    for i, sym in enumerate(rows.symbols):
        preds = {t: float(p[i]) for t, p in probs.items()}
        voters = {t: p for t, p in preds.items() if t not in eng.quarantined}
        threshold = (min_confidence_by_symbol or {}).get(sym, min_confidence)
        v = vote(voters, weights, min_confidence_threshold=threshold)
        result.signals[sym] = SymbolSignal(sym, int(rows.t_ms[i]), preds, v if v.has_signal else None, v.reason,
                                           min_confidence=threshold)
    return result


def run_inference(*, exchange: str | None = None, timeframe: str | None = None, symbols: list[str] | None = None,
                  publish: bool = True) -> InferenceResult:
    from ai.features.compute import INFERENCE_BARS
    from ai.features.dataset import bars_from_db, sectors_from_db

    exchange = exchange or settings.MARKET_EXCHANGE
    timeframe = timeframe or settings.UNIVERSE_TIMEFRAME
    if publish and current_mode() == Mode.HALTED:
        log.warning("system HALTED: inference publishes no signals")
        return InferenceResult()
    bars = bars_from_db(exchange, timeframe, symbols, INFERENCE_BARS)
    sectors = sectors_from_db(exchange, list(bars))
    meta = None
    if settings.RL_META_STRATEGY_ENABLED:  # off: not a line of the meta-strategy runs
        from ai.meta.services import choose_profiles

        meta = choose_profiles(bars, sectors)
    result = infer(bars, sectors=sectors, min_confidence_by_symbol=meta.thresholds() if meta else None)
    if meta is not None:
        meta.apply(result)
    if publish:
        _publish(result, timeframe, meta=meta)
    return result


def _publish(result: InferenceResult, timeframe: str, meta=None) -> None:
    versions = {s.version.model_type: str(s.version.version) for s in engine().serving}
    events = []
    for sig in result.signals.values():
        for model, p in sig.predictions.items():
            events.append((EventType.MODEL_PREDICTION, {
                "symbol": sig.symbol, "timeframe": timeframe, "model": model, "model_version": versions.get(model, "?"),
                "prob_up": p, "prob_down": 1.0 - p, "latency_ms": result.model_latency_ms.get(model, 0.0),
                "bar_open_time": datetime.fromtimestamp(sig.t_ms / 1000, UTC)}))
        if sig.vote is not None:
            v = sig.vote
            events.append((EventType.SIGNAL_GENERATED, {
                "symbol": sig.symbol, "timeframe": timeframe, "action": v.action, "confidence": v.confidence,
                "score": v.score, "ensemble_agreement": min(v.ensemble_agreement, 1.0), "models_voted": v.models_voted,
                "min_confidence_threshold": sig.min_confidence,
                "model_versions": {m: versions.get(m, "?") for m in v.weights}}))
    no_models = result.signals and all(s.vote is None and s.stood_aside_from is None for s in result.signals.values())
    if no_models:
        events.append((EventType.SYSTEM_ALERT, {
            "severity": "critical", "component": "inference", "service": "ai-service",
            "message": "no model answered: no signals this pass (" + "; ".join(
                f"{k}: {v}" for k, v in {**engine().problems, **result.dropped_models}.items()) + ")"}))
    with transaction.atomic():
        envelopes = publish_many(events, source="ai-service") if events else []
        if meta is not None:  # the decisions, under the trace id the signals carry
            from qtweb.tracing import current_trace_id, new_trace_id

            meta.record(result, timeframe, envelopes[0].trace_id if envelopes else current_trace_id() or new_trace_id())


def get_signal(symbol: str) -> dict:
    """RPC `get_signal`: the ensemble's current view of one symbol (no events published)."""
    from trading.exchanges.errors import BadSymbol

    if not isinstance(symbol, str) or not symbol:
        raise ValueError("symbol must be a unified symbol such as BTC/USDT:USDT")
    try:
        result = run_inference(symbols=[symbol], publish=False)
    except BadSymbol as exc:
        raise ValueError(str(exc)) from None
    if symbol in result.skipped:
        return {"symbol": symbol, "signal": None, "reason": result.skipped[symbol]}
    sig = result.signals.get(symbol)
    if sig is None or sig.vote is None:
        return {"symbol": symbol, "signal": None, "reason": sig.reason if sig else "no bars",
                "dropped_models": result.dropped_models}
    v = sig.vote
    return {"symbol": symbol, "signal": {"action": v.action, "confidence": v.confidence, "score": v.score,
                                         "ensemble_agreement": v.ensemble_agreement, "models_voted": v.models_voted,
                                         "probability_up": v.probability_up},
            "predictions": sig.predictions, "dropped_models": result.dropped_models, "bar_open_time_ms": sig.t_ms}


def historical_probabilities(bars_by_symbol: dict[str, np.ndarray], *, eng: InferenceEngine | None = None,
                             sectors: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The serving ensemble's P(up) at every bar of each series (0.5 where a bar has no clean
    feature row yet, i.e. the warm-up). Used to train the RL sizer on what the models said."""
    from ai.features.compute import DEFAULT_LOOKBACK, DEFAULT_PARAMS, compute_universe_features, min_history_bars
    from ai.features.dataset import _seq_windows

    eng = eng or engine()
    eng.refresh()
    if not eng.serving:
        raise ValueError("no champion serves: nothing to compute probabilities with")
    names, features = compute_universe_features(bars_by_symbol, DEFAULT_PARAMS, sectors)
    cols = [names.index(c) for c in DEFAULT_PARAMS.seq_channels]
    need = min_history_bars(DEFAULT_LOOKBACK, DEFAULT_PARAMS)
    weights = eng.weights()
    if not any(w > 0 for w in weights.values()):  # no model shows skill: an equal say, as vote() does
        weights = dict.fromkeys(weights, 1.0)
    out = {}
    for sym, bars in bars_by_symbol.items():
        p_full = np.full(len(bars), 0.5)
        feats = features[sym]
        rows = np.arange(need - 1, len(bars))
        if len(rows):
            x_tab = feats[rows].astype(np.float32)
            x_seq = _seq_windows(feats[:, cols], rows, DEFAULT_LOOKBACK)
            ok = np.isfinite(x_tab).all(axis=1) & np.isfinite(x_seq).all(axis=(1, 2))
            rows, x_tab, x_seq = rows[ok], x_tab[ok], x_seq[ok]
        if len(rows):
            total = np.zeros(len(rows))
            wsum = 0.0
            for s in eng.serving:
                w = weights.get(s.version.model_type, 0.0)
                if w <= 0 or s.version.model_type in eng.quarantined:
                    continue
                x = x_tab if s.forecaster.input_kind == "tab" else x_seq
                total += w * np.asarray(s.forecaster.predict_proba_up(x), dtype=float)
                wsum += w
            if wsum > 0:
                p_full[rows] = total / wsum
        out[sym] = p_full
    return out
