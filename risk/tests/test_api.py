"""/api/risk/: the policy (read, versioned edits naming every bad field), the system mode, the
emergency stop, recorded decisions and the what-if validation; reads for any logged-in user,
writes for staff only. PostgreSQL and Redis (the policy and mode caches) are real."""
from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_cache")]


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("boss", password="pw-boss-12345", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-12345")
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def anon():
    return APIClient()


def events(kind: str) -> list[dict]:
    from qtweb.events.models import Event

    return list(Event.objects.filter(type=kind).order_by("timestamp").values_list("payload", flat=True))


# --- authentication and permissions --------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), [
    ("get", "/api/risk/policy/"),
    ("get", "/api/risk/policy/versions/"),
    ("put", "/api/risk/policy/"),
    ("patch", "/api/risk/policy/"),
    ("get", "/api/risk/mode/"),
    ("post", "/api/risk/mode/"),
    ("post", "/api/risk/emergency-stop/"),
    ("get", "/api/risk/decisions/"),
    ("post", "/api/risk/validate/"),
])
def test_anonymous_requests_are_refused(anon, method, url):
    resp = getattr(anon, method)(url, {}, format="json")
    assert resp.status_code in (401, 403)


@pytest.mark.parametrize(("method", "url", "body"), [
    ("put", "/api/risk/policy/", {"changes": {"max_leverage": 5}, "reason": "lower it"}),
    ("patch", "/api/risk/policy/", {"changes": {"max_leverage": 5}, "reason": "lower it"}),
    ("post", "/api/risk/mode/", {"mode": "SHADOW", "reason": "dry run"}),
    ("post", "/api/risk/emergency-stop/", {"reason": "panic"}),
])
def test_writes_need_staff_and_a_refused_write_changes_nothing(viewer, method, url, body):
    from qtweb.events.models import Event
    from risk.models import ModeChange, RiskPolicy

    resp = getattr(viewer, method)(url, body, format="json")
    assert resp.status_code == 403
    assert RiskPolicy.objects.count() <= 1 and not ModeChange.objects.exists() and not Event.objects.exists()


def test_reads_are_open_to_any_logged_in_user(viewer):
    for url in ("/api/risk/policy/", "/api/risk/policy/versions/", "/api/risk/mode/", "/api/risk/decisions/"):
        assert viewer.get(url).status_code == 200, url


# --- policy --------------------------------------------------------------------------------


def test_get_policy_shows_the_version_in_force_with_every_value(viewer):
    from risk.domain.policy import POLICY_FIELDS

    body = viewer.get("/api/risk/policy/").json()
    assert body["version"] == 1 and body["created_by"] == "system" and body["created_at"]
    assert set(body["values"]) == set(POLICY_FIELDS)
    assert body["values"]["max_leverage"] == 20 and body["values"]["max_position_usd"] == "10000"


def test_put_creates_a_new_version_and_publishes_policy_updated(staff):
    from risk.models import RiskPolicy
    from risk.services.policy import policy_get

    resp = staff.put("/api/risk/policy/", {"changes": {"max_leverage": 5, "max_position_usd": "2500"},
                                           "reason": "calmer markets ahead"}, format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["version"] == 2 and body["created_by"] == "boss" and body["reason"] == "calmer markets ahead"
    assert body["changed_fields"] == ["max_leverage", "max_position_usd"]
    assert body["values"]["max_leverage"] == 5 and body["values"]["max_position_usd"] == "2500"
    assert list(RiskPolicy.objects.values_list("version", flat=True)) == [2, 1]
    assert events("policy.updated") == [{"policy_version": 2, "changed_fields": ["max_leverage", "max_position_usd"],
                                         "updated_by": "boss"}]
    assert policy_get().version == 2 and policy_get().max_leverage == 5
    assert staff.get("/api/risk/policy/").json()["version"] == 2
    versions = staff.get("/api/risk/policy/versions/").json()
    assert versions["count"] == 2 and [v["version"] for v in versions["results"]] == [2, 1]


def test_patch_edits_too_and_sector_caps_and_lists_round_trip(staff):
    resp = staff.patch("/api/risk/policy/", {
        "changes": {"sector_exposure_pct": {"meme": "20", "layer1": 60}, "symbol_denylist": ["LUNA/USDT:USDT"]},
        "reason": "cap the meme coins"}, format="json")
    assert resp.status_code == 201, resp.content
    values = resp.json()["values"]
    assert values["sector_exposure_pct"] == {"layer1": "60", "meme": "20"}
    assert values["symbol_denylist"] == ["LUNA/USDT:USDT"]


def test_a_bad_edit_names_every_bad_field_and_writes_nothing(staff):
    from risk.models import RiskPolicy

    resp = staff.put("/api/risk/policy/", {"changes": {
        "max_leverage": 500, "max_position_usd": "-5", "min_confidence": "abc", "max_daily_drawdown_pct": 0,
        "bogus_limit": 1}, "reason": "typos everywhere"}, format="json")
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert set(errors) == {"max_leverage", "max_position_usd", "min_confidence", "max_daily_drawdown_pct",
                           "unknown_fields"}
    assert "125" in errors["max_leverage"] and "500" in errors["max_leverage"]
    assert "negative" in errors["max_position_usd"]
    assert "bogus_limit" in errors["unknown_fields"]
    assert not RiskPolicy.objects.filter(version__gt=1).exists() and events("policy.updated") == []


@pytest.mark.parametrize(("body", "field"), [
    ({"changes": {"max_leverage": 5}}, "reason"),
    ({"changes": {"max_leverage": 5}, "reason": " x "}, "reason"),
    ({"changes": {}, "reason": "nothing at all"}, "changes"),
    ({"changes": "max_leverage=5", "reason": "a string"}, "changes"),
    ({"changes": {"max_leverage": 20}, "reason": "the same value"}, "changes"),
    ({"changes": {"max_leverage": 5}, "reason": "extra key", "version": 9}, "body"),
    ({"changes": {"max_leverage": 5, "version": 9}, "reason": "pick my own version"}, "version"),
])
def test_malformed_policy_edits_are_refused(staff, body, field):
    from risk.models import RiskPolicy

    resp = staff.put("/api/risk/policy/", body, format="json")
    assert resp.status_code == 400
    assert field in resp.json()["errors"]
    assert RiskPolicy.objects.count() <= 1 and events("policy.updated") == []


# --- modes ---------------------------------------------------------------------------------


def test_mode_starts_normal_and_an_operator_change_is_recorded(staff, viewer):
    from risk.models import ModeChange

    first = viewer.get("/api/risk/mode/").json()
    assert first == {"mode": "NORMAL", "changed_at": None, "changes": []}
    resp = staff.post("/api/risk/mode/", {"mode": "SHADOW", "reason": "dry run before the release"}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["mode"] == "SHADOW"
    row = ModeChange.objects.get()
    assert (row.previous_mode, row.mode, row.changed_by, row.by_operator) == ("NORMAL", "SHADOW", "boss", True)
    assert events("system.mode_changed") == [{"previous_mode": "NORMAL", "mode": "SHADOW",
                                              "reason": "dry run before the release", "changed_by": "boss"}]
    now = viewer.get("/api/risk/mode/").json()
    assert now["mode"] == "SHADOW" and now["changes"][0]["reason"] == "dry run before the release"
    assert now["changed_at"] is not None


def test_mode_history_lists_the_last_twenty_changes(staff):
    for i in range(11):
        staff.post("/api/risk/mode/", {"mode": "SHADOW", "reason": f"round {i}"}, format="json")
        staff.post("/api/risk/mode/", {"mode": "NORMAL", "reason": f"back {i}"}, format="json")
    body = staff.get("/api/risk/mode/").json()
    assert body["mode"] == "NORMAL" and len(body["changes"]) == 20
    assert body["changes"][0]["reason"] == "back 10"


@pytest.mark.parametrize(("body", "field"), [
    ({"mode": "TURBO", "reason": "go faster"}, "mode"),
    ({"reason": "no mode"}, "mode"),
    ({"mode": "SHADOW"}, "reason"),
    ({"mode": "SHADOW", "reason": "  "}, "reason"),
])
def test_malformed_mode_changes_are_400(staff, body, field):
    from risk.models import ModeChange

    resp = staff.post("/api/risk/mode/", body, format="json")
    assert resp.status_code == 400 and field in resp.json()["errors"]
    assert not ModeChange.objects.exists()


def test_forbidden_transitions_are_409_with_the_rule(staff):
    from risk.models import ModeChange

    same = staff.post("/api/risk/mode/", {"mode": "NORMAL", "reason": "again"}, format="json")
    assert same.status_code == 409 and "already in NORMAL" in same.json()["detail"]
    assert staff.post("/api/risk/mode/", {"mode": "HALTED", "reason": "stop"}, format="json").status_code == 200
    back = staff.post("/api/risk/mode/", {"mode": "NORMAL", "reason": "resume"}, format="json")
    assert back.status_code == 409
    assert "HALTED -> NORMAL is not allowed" in back.json()["detail"] and "REDUCE_ONLY" in back.json()["detail"]
    assert staff.post("/api/risk/mode/", {"mode": "REDUCE_ONLY", "reason": "resume slowly"},
                      format="json").status_code == 200
    assert list(ModeChange.objects.order_by("created_at", "pk").values_list("mode", flat=True)) == [
        "HALTED", "REDUCE_ONLY"]


# --- emergency stop ------------------------------------------------------------------------


def test_emergency_stop_halts_once_and_reports_already_halted_after(staff):
    from risk.models import GovernorState, ModeChange
    from risk.services.modes import mode_get

    resp = staff.post("/api/risk/emergency-stop/", {"reason": "exchange is misbehaving", "flatten": False},
                      format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"halted": True, "already_halted": False}
    assert mode_get() == "HALTED"
    row = ModeChange.objects.get()
    assert row.mode == "HALTED" and row.changed_by == "boss" and row.by_operator
    assert "exchange is misbehaving" in row.reason
    stop = events("emergency.stop")
    assert len(stop) == 1 and stop[0]["triggered_by"] == "boss" and stop[0]["flatten_positions"] is False
    assert stop[0]["reason"] == "exchange is misbehaving"
    assert GovernorState.objects.get(pk=1).last_emergency_reason == "exchange is misbehaving"

    again = staff.post("/api/risk/emergency-stop/", {"reason": "pressing it twice"}, format="json")
    assert again.status_code == 200 and again.json() == {"halted": True, "already_halted": True}
    # the mode is not changed again, but the cancel/flatten runs again (a HALT without it leaves orders working)
    assert ModeChange.objects.count() == 1 and len(events("emergency.stop")) == 2
    assert staff.get("/api/risk/mode/").json()["mode"] == "HALTED"


def test_emergency_stop_flatten_defaults_to_the_policy(staff):
    assert staff.post("/api/risk/emergency-stop/", {"reason": "drill"}, format="json").status_code == 200
    assert events("emergency.stop")[0]["flatten_positions"] is True  # flatten_on_emergency's default


@pytest.mark.parametrize(("body", "field"), [
    ({}, "reason"),
    ({"reason": "no"}, "reason"),
    ({"reason": "    "}, "reason"),
    ({"reason": "fine reason", "flatten": "yes"}, "flatten"),
])
def test_emergency_stop_without_a_proper_reason_is_400_and_halts_nothing(staff, body, field):
    from risk.models import ModeChange

    resp = staff.post("/api/risk/emergency-stop/", body, format="json")
    assert resp.status_code == 400 and field in resp.json()["errors"]
    assert not ModeChange.objects.exists() and events("emergency.stop") == []


# --- decisions -----------------------------------------------------------------------------


def _decision(symbol: str, approved: bool, **kw):
    from risk.models import RiskDecision

    return RiskDecision.objects.create(source="manual", symbol=symbol, side="buy", size_usd=Decimal("100"),
                                       leverage=2, approved=approved, policy_version=1, mode="NORMAL",
                                       reasons=[] if approved else [{"rule": "leverage", "message": "too high"}],
                                       **kw)


def test_decisions_are_paginated_and_filtered(viewer):
    _decision("BTC/USDT:USDT", True, trace_id="t-1")
    _decision("BTC/USDT:USDT", False)
    _decision("ETH/USDT:USDT", True)
    body = viewer.get("/api/risk/decisions/").json()
    assert body["count"] == 3 and len(body["results"]) == 3
    assert body["results"][0]["symbol"] == "ETH/USDT:USDT"  # newest first
    btc = viewer.get("/api/risk/decisions/", {"symbol": "BTC/USDT:USDT"}).json()
    assert btc["count"] == 2
    rejected = viewer.get("/api/risk/decisions/", {"symbol": "BTC/USDT:USDT", "approved": "false"}).json()
    assert rejected["count"] == 1 and rejected["results"][0]["reasons"][0]["rule"] == "leverage"
    assert viewer.get("/api/risk/decisions/", {"approved": "true"}).json()["count"] == 2
    page = viewer.get("/api/risk/decisions/", {"limit": 1, "offset": 1}).json()
    assert page["count"] == 3 and len(page["results"]) == 1 and page["next"] and page["previous"]
    bad = viewer.get("/api/risk/decisions/", {"approved": "maybe"})
    assert bad.status_code == 400 and bad.json() == {"approved": ["true or false, got 'maybe'"]}
    assert viewer.get("/api/risk/decisions/", {"approved": " TRUE "}).json()["count"] == 2
    assert viewer.get("/api/risk/decisions/", {"approved": "0"}).json()["count"] == 1
    assert viewer.get("/api/risk/decisions/", {"approved": ""}).json()["count"] == 3


# --- what-if validation --------------------------------------------------------------------


@pytest.fixture
def market(db, settings):
    from tests.support.execution import build_market
    from trading.exchanges.account import use_gateway

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    yield build_market()
    use_gateway(None)


def test_validate_answers_what_if_without_recording(market, staff, viewer):
    from risk.models import RiskDecision

    refused = viewer.post("/api/risk/validate/", {"symbol": "BTC/USDT:USDT", "size_usd": "500"}, format="json")
    assert refused.status_code == 403  # it reads the exchange account: staff only
    ok = staff.post("/api/risk/validate/", {"symbol": "BTC/USDT:USDT", "size_usd": "500", "leverage": 3,
                                             "side": "buy"}, format="json")
    assert ok.status_code == 200, ok.content
    body = ok.json()
    assert body["approved"] is True and body["policy_version"] == 1 and Decimal(body["max_allowed_size"]) > 0
    too_much = staff.post("/api/risk/validate/", {"symbol": "BTC/USDT:USDT", "size_usd": "500", "leverage": 50,
                                                   "side": "sell"}, format="json").json()
    assert too_much["approved"] is False and any(r["rule"] == "leverage" for r in too_much["reasons"])
    assert not RiskDecision.objects.exists()


@pytest.mark.parametrize(("body", "needle"), [
    ({"symbol": "NOPE/USDT:USDT", "size_usd": "100"}, "unknown symbol 'NOPE/USDT:USDT'"),
    ({"symbol": "btc", "size_usd": "100"}, "symbol must be a unified symbol"),
    ({"symbol": "BTC/USDT:USDT", "size_usd": "-1"}, "size_usd must be a positive number"),
    ({"symbol": "BTC/USDT:USDT", "size_usd": "lots"}, "size_usd must be a number"),
    ({"symbol": "BTC/USDT:USDT", "size_usd": "100", "side": "up"}, "side must be 'buy' or 'sell'"),
    ({"symbol": "BTC/USDT:USDT", "size_usd": "100", "leverage": 2.5}, "leverage must be a whole number"),
    ({"symbol": "BTC/USDT:USDT"}, "missing size_usd"),
])
def test_validate_names_a_bad_argument(market, staff, body, needle):
    resp = staff.post("/api/risk/validate/", body, format="json")
    assert resp.status_code == 400 and needle in resp.json()["detail"]


def test_the_openapi_schema_still_builds(staff):
    resp = staff.get("/api/schema/")
    assert resp.status_code == 200
    text = resp.content.decode()
    for p in ("/api/risk/policy/", "/api/risk/emergency-stop/", "/api/trading/orders/", "/api/trading/positions/"):
        assert p in text
