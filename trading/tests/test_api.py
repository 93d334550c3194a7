"""/api/trading/: positions (list and per-symbol status), orders, intents, reconciliation runs,
and the manual order (staff): checked against the ExecutionRequest schema, the execution
exchange's symbols and the policy's leverage cap before one `execution.request` is published.
Real paper exchange and PostgreSQL, no workers."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

D = Decimal
BTC = "BTC/USDT:USDT"


@pytest.fixture(autouse=True)
def _fresh_policy():
    from risk.services.policy import policy_invalidate

    policy_invalidate()
    yield
    policy_invalidate()


@pytest.fixture
def staff(paper_market, django_user_model):
    user = django_user_model.objects.create_user("desk", password="pw-desk-12345", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(paper_market, django_user_model):
    user = django_user_model.objects.create_user("watcher", password="pw-watch-12345")
    client = APIClient()
    client.force_login(user)
    return client


def requests_published() -> list:
    from qtweb.events.models import Event

    return list(Event.objects.filter(type="execution.request").order_by("timestamp"))


def trade(key: str, symbol=BTC, side="buy", amount="0.05", **kw):
    """A manual intent run in-process (as the execution worker would): real orders and fills."""
    from trading.execution.services import intent_create, intent_process

    intent, _ = intent_create(key=key, source="manual", symbol=symbol, side=side, amount=D(amount),
                              strategy="market", **kw)
    return intent_process(intent.pk)


# --- authentication ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), [
    ("get", "/api/trading/positions/"),
    ("get", f"/api/trading/positions/{BTC}/"),
    ("get", "/api/trading/orders/"),
    ("post", "/api/trading/orders/"),
    ("get", "/api/trading/intents/"),
    ("get", "/api/trading/reconciliations/"),
])
def test_anonymous_requests_are_refused(method, url):
    resp = getattr(APIClient(), method)(url, {}, format="json")
    assert resp.status_code in (401, 403)


def test_a_manual_order_needs_staff(viewer):
    resp = viewer.post("/api/trading/orders/", {"symbol": BTC, "side": "buy", "order_type": "market",
                                                "amount": "0.01"}, format="json")
    assert resp.status_code == 403 and requests_published() == []
    assert viewer.get("/api/trading/orders/").status_code == 200


# --- reads ---------------------------------------------------------------------------------


def test_positions_list_and_status_by_symbol(viewer):
    intent = trade("api-pos-1", leverage=3)
    assert intent.status == "done", intent.reason
    open_ = viewer.get("/api/trading/positions/", {"status": "open"}).json()
    assert open_["count"] == 1
    pos = open_["results"][0]
    assert pos["symbol"] == BTC and pos["side"] == "long" and pos["status"] == "open" and pos["leverage"] == 3
    assert D(pos["amount"]) == D("0.05") and D(pos["entry_price"]) > 0
    assert viewer.get("/api/trading/positions/", {"status": "closed"}).json()["count"] == 0
    assert viewer.get("/api/trading/positions/", {"status": "maybe"}).status_code == 400
    assert viewer.get("/api/trading/positions/").json()["count"] == 1

    for url in (f"/api/trading/positions/{BTC}/", "/api/trading/positions/BTC%2FUSDT%3AUSDT/",
                f"/api/trading/positions/status/?symbol={BTC}"):
        status = viewer.get(url)
        assert status.status_code == 200, url
        body = status.json()
        assert body["symbol"] == BTC and body["open"] is True and body["position"]["position_id"] == pos["position_id"]
        assert body["last_closed"] is None
    flat = viewer.get("/api/trading/positions/ETH/USDT:USDT/").json()
    assert flat == {"symbol": "ETH/USDT:USDT", "open": False, "position": None, "last_closed": None}
    bad = viewer.get("/api/trading/positions/not-a-symbol/")
    assert bad.status_code == 400 and "unified symbol" in bad.json()["detail"]
    assert viewer.get("/api/trading/positions/status/").status_code == 400


def test_orders_intents_and_reconciliations(viewer):
    from trading.models import ReconciliationRun

    trade("api-ord-1")
    trade("api-ord-2", symbol="ETH/USDT:USDT", amount="0.5")
    orders = viewer.get("/api/trading/orders/").json()
    assert orders["count"] == 2 and {o["symbol"] for o in orders["results"]} == {BTC, "ETH/USDT:USDT"}
    assert all(o["status"] == "filled" for o in orders["results"])
    btc = viewer.get("/api/trading/orders/", {"symbol": BTC, "status": "filled"}).json()
    assert btc["count"] == 1 and btc["results"][0]["intent_key"] == "api-ord-1"
    assert viewer.get("/api/trading/orders/", {"status": "open"}).json()["count"] == 0
    assert viewer.get("/api/trading/orders/", {"status": "nope"}).status_code == 400
    coid = btc["results"][0]["client_order_id"]
    assert viewer.get("/api/trading/orders/", {"client_order_id": coid}).json()["count"] == 1

    intents = viewer.get("/api/trading/intents/").json()
    assert intents["count"] == 2 and intents["results"][0]["intent_key"] == "api-ord-2"
    assert viewer.get("/api/trading/intents/", {"source": "manual", "status": "done"}).json()["count"] == 2
    assert viewer.get("/api/trading/intents/", {"symbol": BTC}).json()["count"] == 1
    assert viewer.get("/api/trading/intents/", {"source": "bogus"}).status_code == 400

    before = viewer.get("/api/trading/reconciliations/").json()["count"]  # the first order reconciles
    ok_before = viewer.get("/api/trading/reconciliations/", {"ok": "true"}).json()["count"]
    assert before == ReconciliationRun.objects.count()
    ReconciliationRun.objects.create(exchange="paper", ok=True, mismatches=[], actions=[])
    ReconciliationRun.objects.create(exchange="paper", ok=False, error="exchange timed out")
    runs = viewer.get("/api/trading/reconciliations/").json()
    assert runs["count"] == before + 2 and runs["results"][0]["error"] == "exchange timed out"
    assert viewer.get("/api/trading/reconciliations/", {"ok": "true"}).json()["count"] == ok_before + 1
    assert viewer.get("/api/trading/reconciliations/", {"ok": "perhaps"}).status_code == 400


@pytest.mark.parametrize(("url", "param", "value", "allowed"), [
    ("/api/trading/positions/", "status", "maybe", "one of open, closed, got 'maybe'"),
    ("/api/trading/orders/", "status", "nope",
     "one of pending, open, partial, filled, cancelled, rejected, unknown, got 'nope'"),
    ("/api/trading/intents/", "status", "asleep",
     "one of pending, rejected, shadow, working, done, stopped, failed, got 'asleep'"),
    ("/api/trading/intents/", "source", "bogus", "one of signal, manual, portfolio_balance, profit_amplification, "
                                                 "position_exit, emergency, got 'bogus'"),
    ("/api/trading/reconciliations/", "ok", "perhaps", "true or false, got 'perhaps'"),
])
def test_a_bad_filter_value_is_400_naming_the_parameter_and_its_values(viewer, url, param, value, allowed):
    resp = viewer.get(url, {param: value})
    assert resp.status_code == 400
    assert resp.json() == {param: [allowed]}
    assert viewer.get(url, {param: ""}).status_code == 200  # empty: no filter


# --- the manual order ----------------------------------------------------------------------


def test_a_valid_manual_order_publishes_exactly_one_execution_request(staff):
    resp = staff.post("/api/trading/orders/", {"symbol": BTC, "side": "buy", "order_type": "market",
                                               "amount": "0.01", "leverage": 5, "requested_by": "someone-else"},
                      format="json")
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert re.fullmatch(r"man-[0-9a-f]{20}", body["client_order_id"])
    published = requests_published()
    assert len(published) == 1
    event = published[0]
    assert str(event.event_id) == body["event_id"] and event.trace_id == body["trace_id"]
    assert event.payload["client_order_id"] == body["client_order_id"]
    assert event.payload["requested_by"] == "desk"  # the logged-in user, whatever the body says
    assert event.payload["symbol"] == BTC and event.payload["leverage"] == 5
    assert D(event.payload["amount"]) == D("0.01")
    assert resp.headers["X-Trace-Id"] == body["trace_id"]


def test_the_published_request_is_one_the_execution_worker_accepts(staff):
    from qtweb.events.schemas import parse_envelope
    from trading.models import ExecutionIntent
    from trading.subscribers import on_execution_request

    resp = staff.post("/api/trading/orders/", {"client_order_id": "desk-limit-1", "symbol": "ETH/USDT:USDT",
                                               "side": "sell", "order_type": "limit", "amount": "0.2",
                                               "price": "99999", "leverage": 2}, format="json")
    assert resp.status_code == 202, resp.content
    assert resp.json()["client_order_id"] == "desk-limit-1"
    event = requests_published()[0]
    on_execution_request(parse_envelope({
        "event_id": str(event.event_id), "type": event.type, "version": event.version, "trace_id": event.trace_id,
        "source": event.source, "timestamp": event.timestamp.isoformat(), "payload": event.payload}))
    intent = ExecutionIntent.objects.get(intent_key="manual:desk-limit-1")
    assert intent.created_by == "desk" and intent.side == "sell" and intent.order_type == "limit"
    assert intent.trace_id == event.trace_id
    # The same client order id again: refused before anything is published.
    again = staff.post("/api/trading/orders/", {"client_order_id": "desk-limit-1", "symbol": "ETH/USDT:USDT",
                                                "side": "sell", "order_type": "market", "amount": "0.2"},
                       format="json")
    assert again.status_code == 400 and "already used" in again.json()["errors"]["client_order_id"]
    assert len(requests_published()) == 1


@pytest.mark.parametrize(("changes", "field", "needle"), [
    ({"amount": "-0.01"}, "amount", "greater than 0"),
    ({"amount": "0"}, "amount", "greater than 0"),
    ({"amount": "lots"}, "amount", "decimal"),
    ({"symbol": "NOPE/USDT:USDT"}, "symbol", "unknown symbol 'NOPE/USDT:USDT' on paper"),
    ({"symbol": "btc-usdt"}, "symbol", "pattern"),
    ({"leverage": 50}, "leverage", "leverage 50 is above the policy's max_leverage 20"),
    ({"leverage": 500}, "leverage", "less than or equal to 125"),
    ({"side": "long"}, "side", "'buy' or 'sell'"),
    ({"order_type": "limit"}, "body", "price is required for a limit order"),
    ({"client_order_id": "has spaces!"}, "client_order_id", "pattern"),
    ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
])
def test_invalid_manual_orders_are_400_naming_the_problem_and_publish_nothing(staff, changes, field, needle):
    body = {"symbol": BTC, "side": "buy", "order_type": "market", "amount": "0.01", **changes}
    resp = staff.post("/api/trading/orders/", body, format="json")
    assert resp.status_code == 400, resp.content
    errors = resp.json()["errors"]
    assert field in errors and needle in errors[field], errors
    assert requests_published() == []


def test_every_problem_of_a_manual_order_is_reported_at_once(staff):
    resp = staff.post("/api/trading/orders/", {"symbol": "NOPE/USDT:USDT", "side": "buy", "order_type": "market",
                                               "amount": "-1", "leverage": 40}, format="json")
    assert resp.status_code == 400
    assert set(resp.json()["errors"]) == {"symbol", "amount", "leverage"}
    assert requests_published() == []
    missing = staff.post("/api/trading/orders/", {}, format="json").json()["errors"]
    assert {"symbol", "side", "order_type", "amount"} <= set(missing)
    assert staff.post("/api/trading/orders/", [1, 2], format="json").status_code == 400
    assert requests_published() == []


def test_the_leverage_cap_follows_the_policy_in_force(staff):
    from risk.services.policy import policy_update

    order = {"symbol": BTC, "side": "buy", "order_type": "market", "amount": "0.01", "leverage": 30}
    assert staff.post("/api/trading/orders/", order, format="json").status_code == 400
    policy_update(changes={"max_leverage": 30}, updated_by="risk-officer", reason="allow more")
    assert staff.post("/api/trading/orders/", order, format="json").status_code == 202
    assert len(requests_published()) == 1
