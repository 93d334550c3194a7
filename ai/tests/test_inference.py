"""Inference over the universe with trained champions; faults drop symbols or models, not the pass."""
from decimal import Decimal
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from ai import inference
from ai.models import ModelStatus, ModelVersion
from qtweb.events.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(settings, tmp_path):
    from trading.simulator.service import seed_history

    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")
    seed_history(days=2, seed=4)
    # Small on purpose (these tests are about the inference path, not model quality).
    call_command("train_models", "--max-epochs", "1", "--bars", "400", "--sample-every", "8", stdout=StringIO())
    inference._engine = None  # a fresh process's engine
    yield
    inference._engine = None
    from django.core.cache import cache

    cache.delete("health:modules:ai-service")  # module reports outlive the test database


def test_one_pass_publishes_predictions_and_signals_for_every_symbol(trained):
    from trading.models import Symbol

    n_symbols = Symbol.objects.filter(exchange="paper", active=True).count()
    result = inference.run_inference()
    assert len(result.signals) == n_symbols and result.skipped == {}
    assert set(result.model_latency_ms) == {"xgboost", "lightgbm", "nhits", "patchtst"}
    assert Event.objects.filter(type="model.prediction").count() == 4 * n_symbols
    signals = Event.objects.filter(type="signal.generated")
    assert signals.count() == n_symbols
    s = signals.first().payload
    assert s["models_voted"] == 4 and 0.5 <= s["confidence"] <= 1 and s["action"] in {"BUY", "SELL", "HOLD"}
    assert len({e.trace_id for e in Event.objects.filter(type__in=["model.prediction", "signal.generated"])}) == 1


def test_a_symbol_with_too_little_history_gets_a_reason_and_the_others_proceed(trained):
    from trading.marketdata.ingest import ingest
    from trading.models import Symbol

    new = Symbol.objects.create(exchange="paper", symbol="NEW/USDT", base="NEW", quote="USDT",
                                tick_size=Decimal("0.0001"), lot_size=Decimal("1"))
    btc_last = inference.run_inference(symbols=["BTC/USDT:USDT"], publish=False).signals["BTC/USDT:USDT"].t_ms
    rows = np.array([[btc_last - (20 - i) * 300_000, 1.0, 1.01, 0.99, 1.0, 10.0] for i in range(1, 21)])
    ingest(new, "5m", rows)
    result = inference.run_inference(publish=False)
    assert "too little history" in result.skipped["NEW/USDT"]
    assert "BTC/USDT:USDT" in result.signals


def test_a_corrupt_champion_is_left_out_and_the_rest_vote(trained):
    xgb = ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION)
    victim = next(p for p in Path(xgb.artifact_path).iterdir() if p.name != "metadata.json")
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    result = inference.run_inference(symbols=["ETH/USDT:USDT"], publish=False)
    assert result.signals["ETH/USDT:USDT"].vote.models_voted == 3
    assert "xgboost" in inference.engine().problems


def test_with_no_model_left_there_is_no_signal_and_one_alert(trained):
    for mv in ModelVersion.objects.filter(status=ModelStatus.CHAMPION):
        from ai import registry

        registry.retire(mv.pk, reason="test: nothing serves")
    result = inference.run_inference()
    assert all(s.vote is None for s in result.signals.values())
    assert not Event.objects.filter(type="signal.generated").exists()
    alert = Event.objects.get(type="system.alert", payload__component="inference")
    assert "no model answered" in alert.payload["message"]


def test_rpc_get_signal_in_process(trained):
    from qtweb.rpc.tasks import execute

    reply = execute.run("ai-service", "get_signal", {"symbol": "SOL/USDT:USDT"})
    assert reply["ok"], reply
    assert reply["result"]["signal"]["models_voted"] == 4
    bad = execute.run("ai-service", "get_signal", {"symbol": "NOPE/USDT"})
    assert bad["error"] == "bad_params" and "NOPE/USDT" in bad["message"]


def test_modes_halted_publishes_nothing_and_reduce_only_sizes_nothing(trained, redis_conn):
    from ai.subscribers import on_mode_changed, size_trade_signal
    from qtweb.events.bus import publish

    def mode(m):
        env = publish("system.mode_changed", {"previous_mode": "NORMAL", "mode": m, "reason": "test",
                                              "changed_by": "operator"})
        on_mode_changed(env)

    try:
        mode("HALTED")
        assert inference.run_inference().signals == {}
        assert not Event.objects.filter(type="signal.generated").exists()
        mode("REDUCE_ONLY")
        inference.run_inference()
        buy = Event.objects.filter(type="signal.generated").first()
        assert buy is not None
        from qtweb.events.schemas import parse_envelope

        size_trade_signal(parse_envelope({**buy.as_envelope(), "payload": {**buy.payload, "action": "BUY"}}))
        assert not Event.objects.filter(type="rl.decision").exists()
    finally:
        inference.set_mode("NORMAL")


def test_max_parallel_predictions_is_honoured(trained):
    eng = inference.InferenceEngine()
    eng.refresh()
    while eng._slots.acquire(blocking=False):  # other passes hold every slot
        pass
    old = inference.PREDICTION_TIMEOUT_SECONDS
    try:
        from ai.features.compute import INFERENCE_BARS
        from ai.features.dataset import bars_from_db, latest_rows

        rows = latest_rows(bars_from_db("paper", "5m", ["BTC/USDT:USDT"], INFERENCE_BARS))
        inference.PREDICTION_TIMEOUT_SECONDS = 0.05
        probs, _, dropped = eng.predict(rows)
        assert probs == {} and set(dropped.values()) == {"max_parallel_predictions reached"}
    finally:
        inference.PREDICTION_TIMEOUT_SECONDS = old


def test_a_missing_model_shows_its_service_degraded_in_health(trained, client):
    from django.core.cache import cache

    from qtweb.health.status import service_statuses

    cache.delete("health:modules:ai-service")
    xgb = ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION)
    from datetime import UTC, datetime

    from ai import registry
    from qtweb.health.models import WorkerHeartbeat

    now = datetime.now(UTC)
    WorkerHeartbeat.objects.create(worker="inference@t", service="ai-service", queue="inference", host="h", pid=1,
                                   started_at=now, last_seen=now)
    assert service_statuses()["ai-service"]["status"] == "HEALTHY"
    registry.retire(xgb.pk, reason="test: one model gone")
    inference.run_inference(publish=False)
    ai = service_statuses()["ai-service"]
    assert ai["modules"]["model:xgboost"]["status"] == "DEGRADED"
    assert ai["modules"]["model:lightgbm"]["status"] == "HEALTHY"
    assert ai["status"] == "DEGRADED" and "model:xgboost" in ai["reason"]
    cache.delete("health:modules:ai-service")
