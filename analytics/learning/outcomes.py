"""The outcome store: every `model.prediction` joined to what followed.

- `record_prediction` (consumer of model.prediction, ops queue) stores one PredictionOutcome per
  event, whatever the number of deliveries.
- `resolve_due` (task on the ops queue, every minute: bookkeeping that must not wait behind a
  retraining job on the learning queue) gives each prediction whose horizon has closed, on the
  market's clock (the simulator's runs ahead of the wall clock in a fast demo), its outcome from
  the stored bars: went up or not, and the forward log return. A gap in the bars leaves it
  `unresolvable` with the reason, never a made-up outcome. Outcomes of the serving champions
  also feed the ensemble's live weights (ai/outcomes.py).
- `join_position` (consumer of position.closed) writes the position's id, PnL and exit reason on
  the predictions of the signal that opened it: the position's entry trace id and its symbol (a
  position closed by a reversing signal reports the closing order's trace, not its entry's).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Q

from ai.features.labels import DEFAULT_HORIZON_BARS
from analytics.models import PredictionOutcome
from core.decimals import to_decimal
from qtweb.events import EventEnvelope
from qtweb.logging import get_logger
from trading.marketdata import selectors, timeframes

log = get_logger(__name__)

# Outcomes resolved per run: bounded so one run stays short after a long pause.
MAX_RESOLVE_PER_RUN = 20_000
# A prediction still without its bars this long after it was due will not get them (the feed
# stores bars in order): it is marked unresolvable.
GIVE_UP_AFTER = timedelta(hours=6)
# Resolved outcomes are kept this long (the drift window and the quarantine look at days, not months).
KEEP_RESOLVED = timedelta(days=30)


def record_prediction(event: EventEnvelope, *, horizon_bars: int = DEFAULT_HORIZON_BARS) -> PredictionOutcome | None:
    p = event.data()
    if p.bar_open_time is None:
        return None  # published before predictions named their bar: nothing to resolve against
    step = timedelta(seconds=timeframes.seconds(p.timeframe))
    try:
        with transaction.atomic():
            return PredictionOutcome.objects.create(
                event_id=event.event_id, trace_id=event.trace_id, model_type=p.model, model_version=p.model_version,
                symbol=p.symbol, timeframe=p.timeframe, bar_open_time=p.bar_open_time, horizon_bars=horizon_bars,
                due_at=p.bar_open_time + step * (horizon_bars + 1), prob_up=p.prob_up)
    except IntegrityError:
        return None  # a redelivery: stored already


def join_position(event: EventEnvelope) -> int:
    """Attach a closed position to the predictions behind the signal that opened it."""
    from trading.selectors import position_entry_trace

    p = event.data()
    entry_trace = position_entry_trace(p.position_id) or event.trace_id
    n = PredictionOutcome.objects.filter(trace_id=entry_trace, symbol=p.symbol).update(
        position_id=p.position_id, position_pnl_usd=to_decimal(p.pnl_usd, "pnl_usd"),
        position_exit_reason=str(p.exit_reason))
    if n:
        log.info("position outcome joined to predictions", position_id=p.position_id, predictions=n)
    return n


def resolve_due(*, exchange: str | None = None, now: datetime | None = None) -> dict[str, int]:
    """Resolve every prediction whose horizon has closed on the market's clock (`now` overrides
    it). Returns counts."""
    from django.conf import settings

    from ai.models import ModelStatus, ModelVersion
    from ai.outcomes import record_outcomes
    from trading.marketdata.clock import market_now

    exchange = exchange or settings.MARKET_EXCHANGE
    now = now or market_now(exchange)
    stamped = datetime.now(UTC)
    due = list(PredictionOutcome.objects.filter(resolved_at__isnull=True, due_at__lte=now)
               .order_by("due_at")[:MAX_RESOLVE_PER_RUN])
    by_series: dict[tuple[str, str], list[PredictionOutcome]] = {}
    for row in due:
        by_series.setdefault((row.symbol, row.timeframe), []).append(row)
    resolved, unresolvable = [], []
    for (symbol, tf), rows in by_series.items():
        try:
            (sym,) = selectors.resolve_symbols([symbol], exchange)
        except Exception as exc:  # a symbol delisted or renamed since: no bars will come
            for r in rows:
                r.unresolvable = f"symbol {symbol} not found on {exchange}: {exc}"[:500]
                unresolvable.append(r)
            continue
        step = timeframes.milliseconds(tf)
        first = min(timeframes.to_ms(r.bar_open_time) for r in rows)
        n = int((timeframes.to_ms(now) - first) // step) + max(r.horizon_bars for r in rows) + 2
        bars = selectors.last_bars([sym.pk], tf, n)[sym.pk]
        close_at = dict(zip(bars[:, 0].astype(np.int64).tolist(), bars[:, 4].tolist(), strict=True))
        for r in rows:
            t0 = timeframes.to_ms(r.bar_open_time)
            c0, c1 = close_at.get(t0), close_at.get(t0 + r.horizon_bars * step)
            if c0 is None or c1 is None or c0 <= 0 or c1 <= 0:
                if now - r.due_at > GIVE_UP_AFTER:
                    r.unresolvable = "a gap in the stored bars: no close at the bar or after the horizon"
                    unresolvable.append(r)
                continue
            r.went_up, r.forward_log_return = bool(c1 > c0), float(np.log(c1 / c0))
            resolved.append(r)
    for r in resolved + unresolvable:
        r.resolved_at = stamped
    with transaction.atomic():
        PredictionOutcome.objects.bulk_update(resolved, ["went_up", "forward_log_return", "resolved_at"])
        PredictionOutcome.objects.bulk_update(unresolvable, ["unresolvable", "resolved_at"])
        pruned, _ = PredictionOutcome.objects.filter(resolved_at__lt=stamped - KEEP_RESOLVED).delete()
    # The live weights describe the models that serve now: a replaced version's late outcomes
    # would be credited to its successor (the tracker is kept per model type).
    serving = {(t, str(v)) for t, v in ModelVersion.objects.filter(status=ModelStatus.CHAMPION)
               .values_list("model_type", "version")}
    record_outcomes((r.model_type, r.prob_up, r.went_up) for r in sorted(resolved, key=lambda r: r.bar_open_time)
                    if (r.model_type, r.model_version) in serving)
    if resolved or unresolvable:
        log.info("prediction outcomes resolved", resolved=len(resolved), unresolvable=len(unresolvable),
                 pruned=pruned)
    return {"resolved": len(resolved), "unresolvable": len(unresolvable), "pruned": pruned}


def recent_outcomes(model_type: str, model_version: str, *, limit: int, beyond_band: bool = False,
                    recorded_since: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(P(up), went up) of a model version's last `limit` resolved outcomes, oldest first.

    beyond_band: only moves beyond the fee band, the labels a model is trained and validated on
    (so a recent Brier compares with its validation Brier); recorded_since: predictions the
    store received after this wall-clock time."""
    from ai.features.labels import DEFAULT_BAND

    qs = PredictionOutcome.objects.filter(model_type=model_type, model_version=model_version, went_up__isnull=False)
    if beyond_band:
        qs = qs.filter(Q(forward_log_return__gt=DEFAULT_BAND) | Q(forward_log_return__lt=-DEFAULT_BAND))
    if recorded_since is not None:
        qs = qs.filter(recorded_at__gte=recorded_since)
    rows = list(qs.order_by("-bar_open_time").values_list("prob_up", "went_up")[:limit])
    rows.reverse()
    if not rows:
        return np.empty(0), np.empty(0, dtype=bool)
    p, y = zip(*rows, strict=True)
    return np.asarray(p, dtype=np.float64), np.asarray(y, dtype=bool)


def outcomes_over_bars(model_type: str, model_version: str, *, n_bars: int, recorded_since: datetime | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(P(up), went up) of a model version's resolved outcomes at its last `n_bars` distinct bars
    (all symbols), oldest first; none unless it has outcomes at `n_bars` bars."""
    qs = PredictionOutcome.objects.filter(model_type=model_type, model_version=model_version, went_up__isnull=False)
    if recorded_since is not None:
        qs = qs.filter(recorded_at__gte=recorded_since)
    bars = list(qs.order_by("-bar_open_time").values_list("bar_open_time", flat=True).distinct()[:n_bars])
    if len(bars) < n_bars:
        return np.empty(0), np.empty(0, dtype=bool)
    rows = list(qs.filter(bar_open_time__gte=bars[-1]).order_by("bar_open_time").values_list("prob_up", "went_up"))
    p, y = zip(*rows, strict=True)
    return np.asarray(p, dtype=np.float64), np.asarray(y, dtype=bool)


def recent_predictions(model_type: str, model_version: str, *, since: datetime) -> np.ndarray:
    """P(up) a model version published for bars since `since` (resolved or not)."""
    return np.asarray(list(PredictionOutcome.objects.filter(
        model_type=model_type, model_version=model_version, bar_open_time__gte=since)
        .values_list("prob_up", flat=True)), dtype=np.float64)
