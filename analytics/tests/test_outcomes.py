"""The outcome store: each model.prediction stored once, resolved against the stored market only
when its horizon has passed, joined to the position its signal opened; the live weights fed."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache

from ai import outcomes as live
from analytics.learning import outcomes
from analytics.models import PredictionOutcome
from qtweb.events.bus import publish_many
from trading.marketdata import selectors, timeframes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_tracker():
    cache.delete(live.TRACKER_KEY)
    yield
    cache.delete(live.TRACKER_KEY)



def test_predictions_are_resolved_against_realized_moves_once_and_only_when_due():
    from tests.support.learning import model_version
    from trading.models import Symbol
    from trading.simulator.service import seed_history

    seed_history(days=1, seed=9)
    model_version("xgboost", 1, "champion")
    model_version("nhits", 1, "champion")
    sym = Symbol.objects.get(exchange="paper", symbol="ETH/USDT:USDT")
    bars = selectors.last_bars([sym.pk], "5m", 100)[sym.pk]
    h = 12
    events, truth = [], []
    for i in range(40):  # 40 due predictions: a perfect model and a contrarian one, and one not serving
        t0, c0, c1 = int(bars[i, 0]), bars[i, 4], bars[i + h, 4]
        truth.append(c1 > c0)
        for model, p in (("xgboost", 0.9 if c1 > c0 else 0.1), ("nhits", 0.1 if c1 > c0 else 0.9),
                         ("lightgbm", 0.5)):
            events.append(("model.prediction", {
                "symbol": sym.symbol, "timeframe": "5m", "model": model, "model_version": "1", "prob_up": p,
                "prob_down": 1 - p, "latency_ms": 1.0, "bar_open_time": timeframes.to_datetime(t0)}))
    not_due_bar = timeframes.to_datetime(int(bars[-1, 0]))
    events.append(("model.prediction", {
        "symbol": sym.symbol, "timeframe": "5m", "model": "xgboost", "model_version": "1", "prob_up": 0.5,
        "prob_down": 0.5, "latency_ms": 1.0, "bar_open_time": not_due_bar}))
    envelopes = publish_many(events, trace_id="trace-outcomes")
    for env in envelopes:
        outcomes.record_prediction(env)
        outcomes.record_prediction(env)  # a redelivery stores nothing new
    assert PredictionOutcome.objects.count() == 121

    now = datetime.now(UTC) + timedelta(seconds=1)
    assert outcomes.resolve_due(now=now)["resolved"] == 120
    xgb = list(PredictionOutcome.objects.filter(model_type="xgboost", went_up__isnull=False).order_by("bar_open_time"))
    assert [o.went_up for o in xgb] == truth
    assert all(o.forward_log_return is not None and (o.forward_log_return > 0) == o.went_up for o in xgb)
    tracker = live.load_tracker()
    assert tracker.brier("xgboost") == pytest.approx(0.01) and tracker.weight("nhits") == 0.0
    assert "lightgbm" not in tracker.outcomes  # no lightgbm serves: its outcomes weigh nobody
    assert outcomes.resolve_due(now=now)["resolved"] == 0  # resolved once
    later = not_due_bar + timedelta(minutes=5 * (h + 2))
    assert outcomes.resolve_due(now=later) == {"resolved": 0, "unresolvable": 0, "pruned": 0}  # bars not stored yet
    gone = outcomes.resolve_due(now=later + outcomes.GIVE_UP_AFTER)  # ... and they never came
    assert gone["unresolvable"] == 1
    assert "gap" in PredictionOutcome.objects.get(resolved_at__isnull=False, went_up__isnull=True).unresolvable


def test_a_closed_position_joins_the_predictions_of_the_signal_that_opened_it():
    bar = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    preds = [("model.prediction", {"symbol": s, "timeframe": "5m", "model": m, "model_version": "3", "prob_up": 0.7,
                                   "prob_down": 0.3, "latency_ms": 1.0, "bar_open_time": bar})
             for s in ("BTC/USDT:USDT", "ETH/USDT:USDT") for m in ("xgboost", "lightgbm")]
    for env in publish_many(preds, trace_id="trace-pos"):
        outcomes.record_prediction(env)
    (closed,) = publish_many([("position.closed", {
        "position_id": "pos-1", "symbol": "BTC/USDT:USDT", "side": "long", "amount": "0.1", "entry_price": "50000",
        "exit_price": "50500", "pnl_usd": "48.5", "exit_reason": "take_profit"})], trace_id="trace-pos")
    assert outcomes.join_position(closed) == 2  # the BTC predictions only
    joined = PredictionOutcome.objects.filter(position_id="pos-1")
    assert {o.symbol for o in joined} == {"BTC/USDT:USDT"} and {o.model_type for o in joined} == {"xgboost", "lightgbm"}
    assert all(o.position_pnl_usd == Decimal("48.5") and o.position_exit_reason == "take_profit" for o in joined)
    assert not PredictionOutcome.objects.filter(symbol="ETH/USDT:USDT").exclude(position_id="").exists()


def test_outcomes_are_due_on_the_market_clock_which_runs_ahead_in_a_fast_demo():
    """At SIM_SPEED_FACTOR > 1 the simulated market's bars lie in the wall clock's future: a
    prediction is resolved when the market's clock has passed its horizon, not the wall's."""
    from trading.models import SimulatorState, Symbol
    from trading.simulator.service import advance, seed_history, simulator_now_ms

    seed_history(days=1, seed=9)
    row = SimulatorState.objects.get()
    clock = row.state["clock"]
    row.state = {**row.state, "clock": {**clock, "sim_anchor_ms": clock["sim_anchor_ms"] + 3 * 3_600_000}}
    row.save()  # the market is three hours ahead, as after a few minutes of a demo at speed 60
    advance(speed_factor=1.0)
    ahead = timeframes.to_datetime(simulator_now_ms())
    assert ahead > datetime.now(UTC) + timedelta(hours=2)
    sym = Symbol.objects.get(exchange="paper", symbol="BTC/USDT:USDT")
    bars = selectors.last_bars([sym.pk], "5m", 40)[sym.pk]
    bar = timeframes.to_datetime(int(bars[0, 0]))  # its horizon closed on the market clock, not on the wall's
    assert bar + timedelta(hours=1, minutes=5) > datetime.now(UTC)
    (env,) = publish_many([("model.prediction", {
        "symbol": sym.symbol, "timeframe": "5m", "model": "xgboost", "model_version": "1", "prob_up": 0.6,
        "prob_down": 0.4, "latency_ms": 1.0, "bar_open_time": bar})])
    outcomes.record_prediction(env)
    assert outcomes.resolve_due(now=datetime.now(UTC))["resolved"] == 0  # the wall clock says not yet
    assert outcomes.resolve_due()["resolved"] == 1  # the market's clock says it has closed
    assert PredictionOutcome.objects.get().went_up == bool(bars[12, 4] > bars[0, 4])


def test_a_position_closed_by_a_reversing_signal_joins_the_predictions_of_its_entry():
    from trading.models import Position, Symbol

    sym = Symbol.objects.create(exchange="paper", symbol="BTC/USDT:USDT", base="BTC", quote="USDT", settle="USDT",
                                market_type="swap", tick_size=Decimal("0.1"), lot_size=Decimal("0.001"))
    pos = Position.objects.create(exchange="paper", symbol=sym, side="long", amount=Decimal("0.1"),
                                  entry_price=Decimal("50000"), leverage=2, opened_at=datetime.now(UTC),
                                  trace_id="trace-entry")
    bar = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    for trace in ("trace-entry", "trace-reversal"):
        (env,) = publish_many([("model.prediction", {
            "symbol": sym.symbol, "timeframe": "5m", "model": "xgboost", "model_version": "1", "prob_up": 0.7,
            "prob_down": 0.3, "latency_ms": 1.0, "bar_open_time": bar})], trace_id=trace)
        outcomes.record_prediction(env)
        bar += timedelta(hours=1)
    (closed,) = publish_many([("position.closed", {
        "position_id": str(pos.pk), "symbol": sym.symbol, "side": "long", "amount": "0.1", "entry_price": "50000",
        "exit_price": "49000", "pnl_usd": "-100", "exit_reason": "signal_reversal"})], trace_id="trace-reversal")
    assert outcomes.join_position(closed) == 1
    assert PredictionOutcome.objects.get(position_id=str(pos.pk)).trace_id == "trace-entry"
