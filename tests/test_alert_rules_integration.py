"""The DrawdownLimit alert rule end to end: real workers (the ops worker evaluates the rules in
its health pass, the execution worker consumes `emergency.stop`), PostgreSQL, Redis and the
paper exchange holding resting limit orders. The account is down more than 10 % on its day:
the rule halts trading through the risk service and the execution worker cancels the orders,
on the exchange and in our books."""
from __future__ import annotations

from decimal import Decimal

import pytest
from celery import current_app
from django.utils import timezone

from core.enums import ExchangeOrderStatus, Mode, OrderStatus
from qtweb import rpc
from qtweb.events.bus import publish
from qtweb.events.models import Event
from tests.support.execution import build_market, last_close
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

D = Decimal
WORKING = (OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


@pytest.fixture
def market(celery_workers):
    market = build_market()
    rpc.call("exec-risk", "reload_gateway", timeout=10, retries=1)  # the worker forgets the last test's DB ids
    yield market
    from trading.exchanges.account import use_gateway

    use_gateway(None)


def _rest(market: dict, client_order_id: str, symbol: str, amount: str) -> None:
    """A buy limit 1.5 % under the market, on the symbol's tick: it rests on the book."""
    tick = market["symbols"][symbol].tick_size
    price = (last_close(symbol) * D("0.985") / tick).to_integral_value() * tick
    publish("execution.request", {"client_order_id": client_order_id, "symbol": symbol, "side": "buy",
                                  "order_type": "limit", "amount": amount, "price": str(price), "strategy": "limit",
                                  "limit_timeout_seconds": 600})


def test_drawdown_limit_halts_through_risk_and_the_execution_worker_cancels_the_resting_orders(market):
    from analytics.alerting.evaluate import evaluate_rules

    # This test is about the drawdown path; the other default rules watch the workers, whose
    # state this test does not control.
    from analytics.alerting.rules import default_rules_install
    from analytics.health.graph import build
    from analytics.models import AlertFiring, AlertRule
    from risk.models import DailyEquity
    from risk.services.modes import mode_get
    from trading.models import Order, PaperOrder
    from trading.snapshots import snapshot_get

    # The migration's rows are gone after any earlier transactional test's flush: install them.
    default_rules_install(reset=True, updated_by="test")
    AlertRule.objects.exclude(name="DrawdownLimit").update(enabled=False)
    _rest(market, "dd-rule-eth", "ETH/USDT:USDT", "0.5")
    _rest(market, "dd-rule-btc", "BTC/USDT:USDT", "0.02")
    wait_for(lambda: Order.objects.filter(status=OrderStatus.OPEN).count() == 2, timeout=30)
    assert PaperOrder.objects.filter(status=ExchangeOrderStatus.OPEN).count() == 2
    assert evaluate_rules(build()) == []  # flat on the day: nothing to do

    # The day started at 112,000 USDT (the risk service's record); the account holds 100,000:
    # down 10.7 %. The execution side rewrites its account snapshot, as after any fill.
    assert DailyEquity.objects.filter(day=timezone.now().date()).update(start_equity_usd=D("112000")) == 1
    rpc.call("exec-risk", "reload_gateway", timeout=10, retries=1)
    snapshot = snapshot_get("paper")
    assert snapshot is not None and snapshot.day_start_equity_usd == D("112000")

    current_app.send_task("analytics.health.evaluate", queue="ops")  # the real health pass on the ops worker
    firing = wait_for(lambda: AlertFiring.objects.filter(rule__name="DrawdownLimit").first(), timeout=30)
    assert firing is not None, "the ops worker's health pass did not fire DrawdownLimit"
    assert firing.subject == "paper" and firing.value == pytest.approx(10.714, abs=1e-3)
    assert firing.action_outcome == "done" and "HALTED" in firing.action_result
    assert mode_get() == Mode.HALTED
    stop = Event.objects.get(type="emergency.stop")
    assert stop.payload["triggered_by"] == "alert rule DrawdownLimit" and stop.trace_id == firing.trace_id
    alert = Event.objects.get(type="system.alert", payload__component="alert_rules")
    assert alert.trace_id == firing.trace_id and alert.payload["severity"] == "critical"
    assert "DrawdownLimit" in alert.payload["message"] and "10.7143 % > 10" in alert.payload["message"]

    # The execution worker consumed emergency.stop: nothing rests on the exchange any more.
    assert wait_for(lambda: not Order.objects.filter(status__in=WORKING).exists(), timeout=30)
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.CANCELLED}
    assert set(PaperOrder.objects.values_list("status", flat=True)) == {ExchangeOrderStatus.CANCELED}

    # Still down 10.7 % on the next pass: within the rule's cooldown, no second stop.
    assert evaluate_rules(build()) == []
    assert Event.objects.filter(type="emergency.stop").count() == 1
    assert AlertFiring.objects.count() == 1
