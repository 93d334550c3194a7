"""Risk and execution working together: real workers (inference, execution, learning, ops),
PostgreSQL, Redis and the paper exchange. Signal -> size -> validate -> order -> position under
one trace id; duplicates trade once; a worker killed between sending an order and storing its
result loses nothing and sends nothing twice; the emergency stop cancels and flattens; RPC."""
from __future__ import annotations

import signal
from decimal import Decimal

import pytest
from django.core.cache import cache

from qtweb import rpc
from qtweb.events.bus import publish, redispatch_pending, wait_until_handled
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from tests.support.execution import build_market, last_close
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

D = Decimal
SIGNAL = {"symbol": "ETH/USDT:USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.85, "score": 0.7,
          "ensemble_agreement": 1.0, "models_voted": 4, "model_versions": {"xgboost": "1", "lightgbm": "1"}}


@pytest.fixture
def market(celery_workers):
    market = build_market()
    rpc.call("exec-risk", "reload_gateway", timeout=10, retries=1)  # the worker forgets the last test's DB ids
    yield market
    from trading.exchanges.account import use_gateway

    use_gateway(None)


def _orders(**kw):
    from trading.models import Order

    return Order.objects.filter(**kw)


def test_a_signal_becomes_one_order_and_a_position_under_its_trace_id_even_when_delivered_twice(market):
    from trading.models import PaperOrder, Position

    trace = "trace-int-signal-1"
    sig = publish("signal.generated", SIGNAL, trace_id=trace)
    order = wait_for(lambda: _orders(trace_id=trace, status="filled").first(), timeout=30)
    assert order.symbol.symbol == "ETH/USDT:USDT" and order.side == "buy" and order.strategy == "market"
    pos = wait_for(lambda: Position.objects.filter(trace_id=trace, status="open").first(), timeout=10)
    assert pos.entry_confidence == D("0.85") and pos.entry_model.startswith("ensemble(")
    types = set(Event.objects.filter(trace_id=trace).values_list("type", flat=True))
    assert {"signal.generated", "rl.decision", "execution.result", "position.opened"} <= types
    assert wait_until_handled(sig.event_id, timeout=10)
    # Deliver the signal again (as after a lost acknowledgement): it is sized again, a second
    # rl.decision reaches execution, and the intent keyed by the signal trades nothing new.
    EventDelivery.objects.filter(event_id=sig.event_id).update(status=DeliveryStatus.PENDING)
    redispatch_pending(older_than_seconds=0, reason="test")
    wait_for(lambda: Event.objects.filter(trace_id=trace, type="rl.decision").count() == 2, timeout=20)
    second = Event.objects.filter(trace_id=trace, type="rl.decision").order_by("-timestamp").first()
    assert wait_until_handled(second.event_id, timeout=20)
    assert _orders().count() == 1 and PaperOrder.objects.count() == 1


def test_worker_killed_after_sending_before_storing_recovers_without_a_second_order(market, celery_workers):
    from trading.models import ExecutionIntent, PaperOrder, Position

    cache.set("exec:fault:after_send", 1, 120)  # the execution worker dies right after create_order
    proc = celery_workers.procs["execution@test"]
    publish("execution.request", {"client_order_id": "crash-int-1", "symbol": "BTC/USDT:USDT", "side": "buy",
                                  "order_type": "market", "amount": "0.03", "leverage": 2},
            trace_id="trace-int-crash-1")
    wait_for(lambda: proc.poll() is not None, timeout=30)  # SIGKILLed
    assert PaperOrder.objects.count() == 1  # the exchange has the order ...
    order = _orders().get()
    assert order.status == "pending" and order.submit_attempts == 1 and order.filled == 0  # ... we do not know
    celery_workers.stop("execution@test", sig=signal.SIGKILL)
    celery_workers.start("execution")
    celery_workers.wait_ready()
    # Start-up reconciliation finds it by clientOrderId: the fill, the position, no new order.
    wait_for(lambda: _orders(status="filled").exists(), timeout=30)
    pos = wait_for(lambda: Position.objects.filter(status="open").first(), timeout=10)
    assert pos.amount == D("0.03") and pos.side == "long" and pos.leverage == 2
    wait_for(lambda: ExecutionIntent.objects.get().status == "done", timeout=20)
    assert PaperOrder.objects.count() == 1 and _orders().count() == 1
    assert not cache.get("exec:fault:after_send")


def test_malformed_manual_order_is_refused_with_the_reason_and_nothing_is_sent(market):
    from trading.models import PaperOrder

    ev = publish("execution.request", {"client_order_id": "bad-int-1", "symbol": "NOPE/USDT:USDT", "side": "buy",
                                       "order_type": "market", "amount": "1"}, trace_id="trace-int-bad-1")
    assert wait_until_handled(ev.event_id, timeout=20)
    alert = wait_for(lambda: Event.objects.filter(trace_id="trace-int-bad-1", type="risk.alert").first(), timeout=10)
    assert "unknown symbol 'NOPE/USDT:USDT'" in alert.payload["message"]
    ev = publish("execution.request", {"client_order_id": "bad-int-2", "symbol": "BTC/USDT:USDT", "side": "buy",
                                       "order_type": "market", "amount": "0.01", "leverage": 25},
                 trace_id="trace-int-bad-2")
    alert = wait_for(lambda: Event.objects.filter(trace_id="trace-int-bad-2", type="risk.alert").first(), timeout=20)
    assert "leverage 25" in alert.payload["message"] and PaperOrder.objects.count() == 0


def test_emergency_stop_while_orders_work_cancels_and_flattens(market):
    from risk.services.governor import emergency_stop
    from trading.models import ExecutionIntent, PaperOrder, Position

    publish("execution.request", {"client_order_id": "es-pos-1", "symbol": "BTC/USDT:USDT", "side": "buy",
                                  "order_type": "market", "amount": "0.02"})
    price = str((last_close("ETH/USDT:USDT") * D("0.985")).quantize(D("0.01")))
    publish("execution.request", {"client_order_id": "es-lim-1", "symbol": "ETH/USDT:USDT", "side": "buy",
                                  "order_type": "limit", "amount": "0.5", "price": price, "strategy": "limit",
                                  "limit_timeout_seconds": 600})
    publish("execution.request", {"client_order_id": "es-twap-1", "symbol": "DOGE/USDT:USDT", "side": "buy",
                                  "order_type": "market", "amount": "5000", "strategy": "twap", "slices": 4,
                                  "duration_seconds": 600})
    wait_for(lambda: Position.objects.filter(status="open").count() == 2 and _orders(status="open").exists(),
             timeout=30)
    assert emergency_stop(reason="integration drill", triggered_by="ops", by_operator=True)
    wait_for(lambda: not Position.objects.filter(status="open").exists(), timeout=30)
    wait_for(lambda: not _orders(status__in=["open", "partial", "pending"]).exists(), timeout=10)
    assert not PaperOrder.objects.filter(status="open").exists()
    assert set(Position.objects.values_list("exit_reason", flat=True)) == {"emergency_stop"}
    twap = ExecutionIntent.objects.get(intent_key="manual:es-twap-1")
    assert twap.status == "stopped" and _orders(intent=twap).count() == 1
    publish("execution.request", {"client_order_id": "es-after-1", "symbol": "BTC/USDT:USDT", "side": "buy",
                                  "order_type": "market", "amount": "0.01"})
    blocked = wait_for(lambda: ExecutionIntent.objects.filter(intent_key="manual:es-after-1",
                                                              status="rejected").first(), timeout=20)
    assert "HALTED" in blocked.reason


def test_rpc_validate_risk_and_position_status_from_the_worker(market):
    ok = rpc.call("exec-risk", "validate_risk", {"symbol": "BTC/USDT:USDT", "size_usd": "5000", "leverage": 3},
                  timeout=10, retries=1)
    assert ok["approved"] is True and ok["reason"] == "approved" and D(ok["max_allowed_size"]) == D("10000")
    no = rpc.call("exec-risk", "validate_risk", {"symbol": "BTC/USDT:USDT", "size_usd": 20000, "leverage": 40},
                  timeout=10, retries=1)
    assert no["approved"] is False and "leverage 40" in no["reason"]
    with pytest.raises(rpc.RpcBadParams, match="positive"):
        rpc.call("exec-risk", "validate_risk", {"symbol": "BTC/USDT:USDT", "size_usd": -1, "leverage": 1},
                 timeout=10, retries=0)
    status = rpc.call("exec-risk", "get_position_status", {"symbol": "BTC/USDT:USDT"}, timeout=10, retries=1)
    assert status == {"symbol": "BTC/USDT:USDT", "open": False, "position": None, "last_closed": None}
