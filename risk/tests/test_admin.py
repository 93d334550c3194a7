"""The risk and execution admin: every page renders; the policy editor (prefilled, per-field
errors) saves through policy_update as a new version; policy and mode rows are never edited or
deleted; the mode form and the EMERGENCY STOP page go through mode_set / emergency_stop."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_cache")]

POLICY_ADD = "/admin/risk/riskpolicy/add/"
MODE_ADD = "/admin/risk/modechange/add/"
ESTOP = "/admin/risk/modechange/emergency-stop/"


def events(kind: str) -> list[dict]:
    from qtweb.events.models import Event

    return list(Event.objects.filter(type=kind).order_by("timestamp").values_list("payload", flat=True))


def policy_form_data(**overrides) -> dict:
    """What the add form posts when submitted with its prefilled values, plus `overrides`."""
    from risk.forms import values_to_initial
    from risk.services.policy import policy_current_row

    data = {k: v for k, v in values_to_initial(policy_current_row().values).items()}
    data["reason"] = "tuning from the admin"
    data.update(overrides)
    if data.get("flatten_on_emergency") is True:
        data["flatten_on_emergency"] = "on"
    else:
        data.pop("flatten_on_emergency", None)  # an unticked checkbox is not posted
    return {k: ("" if v is None else v) for k, v in data.items()}


# --- pages render --------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "/admin/risk/",
    "/admin/risk/riskpolicy/",
    POLICY_ADD,
    "/admin/risk/modechange/",
    MODE_ADD,
    ESTOP,
    "/admin/risk/riskdecision/",
    "/admin/risk/dailyequity/",
    "/admin/risk/governorstate/",
    "/admin/trading/executionintent/",
    "/admin/trading/order/",
    "/admin/trading/fill/",
    "/admin/trading/position/",
    "/admin/trading/reconciliationrun/",
    "/admin/trading/order/?q=abc123&status__exact=filled",
    "/admin/trading/executionintent/?q=trace-1&source__exact=manual",
])
def test_admin_pages_render(admin_client, url):
    resp = admin_client.get(url)
    assert resp.status_code == 200, url


def test_admin_needs_a_staff_login(client, django_user_model):
    assert client.get("/admin/risk/riskpolicy/").status_code == 302
    user = django_user_model.objects.create_user("plain", password="pw-plain-12345")
    client.force_login(user)
    for url in ("/admin/risk/riskpolicy/", POLICY_ADD, ESTOP):
        resp = client.get(url)
        assert resp.status_code == 302 and "/admin/login/" in resp["Location"], url


def test_the_policy_form_is_prefilled_with_the_version_in_force(admin_client):
    from risk.services.policy import policy_update

    policy_update(changes={"max_leverage": 7, "symbol_allowlist": ["BTC/USDT:USDT", "ETH/USDT:USDT"],
                           "sector_exposure_pct": {"meme": "15", "layer1": "60"}}, updated_by="x", reason="setup")
    html = admin_client.get(POLICY_ADD).content.decode()
    assert 'name="max_leverage" value="7"' in html
    assert 'name="max_position_usd" value="10000"' in html
    assert 'value="BTC/USDT:USDT, ETH/USDT:USDT"' in html
    assert "layer1=60\nmeme=15" in html
    assert re.search(r'<input type="checkbox" name="flatten_on_emergency"[^>]* checked>', html)


def test_saving_the_policy_form_creates_a_new_version_and_publishes(admin_client):
    from risk.models import RiskPolicy
    from risk.services.policy import policy_get

    resp = admin_client.post(POLICY_ADD, policy_form_data(max_leverage="8", symbol_denylist="LUNA/USDT:USDT, FTT/USDT",
                                                          sector_exposure_pct="meme=20\n\nlayer1 = 55"))
    assert resp.status_code == 302, resp.content.decode()[-3000:]
    row = RiskPolicy.objects.order_by("-version").first()
    assert row.version == 2 and row.created_by == "admin" and row.reason == "tuning from the admin"
    assert row.changed_fields == ["max_leverage", "sector_exposure_pct", "symbol_denylist"]
    assert row.values["max_leverage"] == 8 and row.values["symbol_denylist"] == ["LUNA/USDT:USDT", "FTT/USDT"]
    assert row.values["sector_exposure_pct"] == {"layer1": "55", "meme": "20"}
    assert events("policy.updated") == [{"policy_version": 2, "updated_by": "admin",
                                         "changed_fields": ["max_leverage", "sector_exposure_pct", "symbol_denylist"]}]
    assert policy_get().max_leverage == 8 and policy_get().sector_cap_pct("meme") == Decimal("20")
    # the version list and the version's read-only page
    assert "Policy v2 is in force (changed: max_leverage" in admin_client.get(resp["Location"]).content.decode()
    assert admin_client.get(f"/admin/risk/riskpolicy/{row.pk}/change/").status_code == 200
    # unticking the checkbox is a change too
    admin_client.post(POLICY_ADD, policy_form_data(flatten_on_emergency=False))
    assert policy_get().flatten_on_emergency is False and policy_get().version == 3


def test_a_bad_policy_form_shows_every_error_next_to_its_field_and_saves_nothing(admin_client):
    from risk.models import RiskPolicy

    resp = admin_client.post(POLICY_ADD, policy_form_data(
        max_leverage="500", max_position_usd="-1", min_confidence="lots", max_open_positions="",
        sector_exposure_pct="meme 20", reason="x"))
    assert resp.status_code == 200
    form = resp.context["adminform"].form
    assert set(form.errors) == {"max_leverage", "max_position_usd", "min_confidence", "max_open_positions",
                                "sector_exposure_pct", "reason"}
    assert "125" in form.errors["max_leverage"][0] and "negative" in form.errors["max_position_usd"][0]
    assert "sector=pct" in form.errors["sector_exposure_pct"][0]
    html = resp.content.decode()
    assert "must be in [1, 125], got 500" in html
    assert RiskPolicy.objects.count() == 1 and events("policy.updated") == []


def test_cross_field_and_no_change_errors(admin_client):
    from risk.models import RiskPolicy

    resp = admin_client.post(POLICY_ADD, policy_form_data(max_daily_drawdown_pct="20", emergency_drawdown_pct="15",
                                                          symbol_allowlist="BTC/USDT", symbol_denylist="BTC/USDT"))
    form = resp.context["adminform"].form
    assert "must be >= max_daily_drawdown_pct" in form.errors["emergency_drawdown_pct"][0]
    assert "both allowed and denied" in form.errors["symbol_denylist"][0]
    unchanged = admin_client.post(POLICY_ADD, policy_form_data())
    assert "nothing changed" in unchanged.content.decode()
    assert RiskPolicy.objects.count() == 1 and events("policy.updated") == []


def test_policy_versions_are_never_edited_or_deleted(admin_client):
    from risk.models import RiskPolicy
    from risk.services.policy import policy_current_row

    row = policy_current_row()
    page = admin_client.get(f"/admin/risk/riskpolicy/{row.pk}/change/").content.decode()
    assert 'name="_save"' not in page  # a view page, no save button
    assert admin_client.post(f"/admin/risk/riskpolicy/{row.pk}/change/", {"reason": "edit"}).status_code == 403
    assert admin_client.get(f"/admin/risk/riskpolicy/{row.pk}/delete/").status_code == 403
    assert admin_client.post("/admin/risk/riskpolicy/", {"action": "delete_selected",
                                                         "_selected_action": [row.pk]}).status_code in (200, 302)
    assert RiskPolicy.objects.filter(pk=row.pk).exists()


# --- modes and the emergency stop ----------------------------------------------------------


def test_the_mode_form_changes_the_mode_through_mode_set(admin_client):
    from risk.models import ModeChange
    from risk.services.modes import mode_get

    listing = admin_client.get("/admin/risk/modechange/").content.decode()
    assert 'data-mode="NORMAL"' in listing and "EMERGENCY STOP" in listing
    resp = admin_client.post(MODE_ADD, {"mode": "SHADOW", "reason": "watch before trading"})
    assert resp.status_code == 302
    row = ModeChange.objects.get()
    assert (row.previous_mode, row.mode, row.changed_by, row.by_operator) == ("NORMAL", "SHADOW", "admin", True)
    assert mode_get() == "SHADOW"
    assert events("system.mode_changed")[0]["changed_by"] == "admin"
    assert admin_client.get(f"/admin/risk/modechange/{row.pk}/change/").status_code == 200
    assert admin_client.get(f"/admin/risk/modechange/{row.pk}/delete/").status_code == 403


def test_the_mode_form_shows_a_refused_transition(admin_client):
    from risk.models import ModeChange

    same = admin_client.post(MODE_ADD, {"mode": "NORMAL", "reason": "again please"})
    assert same.status_code == 200 and "already in NORMAL" in same.content.decode()
    short = admin_client.post(MODE_ADD, {"mode": "SHADOW", "reason": "x"})
    assert short.status_code == 200 and "reason" in short.context["adminform"].form.errors
    assert not ModeChange.objects.exists()


def test_the_emergency_stop_page_halts_once_and_a_second_stop_flattens_again(admin_client):
    from risk.models import ModeChange
    from risk.services.modes import mode_get

    page = admin_client.get(ESTOP).content.decode()
    assert "EMERGENCY STOP" in page and 'data-mode="NORMAL"' in page
    empty = admin_client.post(ESTOP, {"reason": "", "flatten": ""})
    assert empty.status_code == 200 and "reason" in empty.context["form"].errors
    assert not ModeChange.objects.exists()

    resp = admin_client.post(ESTOP, {"reason": "feed is broken", "flatten": "false"}, follow=True)
    assert resp.status_code == 200 and "EMERGENCY STOP: the system is HALTED" in resp.content.decode()
    assert mode_get() == "HALTED"
    row = ModeChange.objects.get()
    assert row.mode == "HALTED" and row.changed_by == "admin" and row.by_operator
    stop = events("emergency.stop")
    assert len(stop) == 1 and stop[0]["triggered_by"] == "admin" and stop[0]["flatten_positions"] is False

    again = admin_client.post(ESTOP, {"reason": "again", "flatten": ""}, follow=True)
    assert "already HALTED" in again.content.decode()
    # the mode is not changed again; the cancel/flatten is requested again
    assert ModeChange.objects.count() == 1 and len(events("emergency.stop")) == 2


def test_decisions_and_execution_records_are_read_only(admin_client):
    from risk.models import RiskDecision

    d = RiskDecision.objects.create(source="manual", symbol="BTC/USDT:USDT", side="buy", size_usd=Decimal("10"),
                                    leverage=1, approved=False, policy_version=1, mode="NORMAL",
                                    reasons=[{"rule": "leverage", "message": "leverage 50 above 20"}])
    listing = admin_client.get("/admin/risk/riskdecision/").content.decode()
    assert "leverage 50 above 20" in listing
    assert admin_client.get(f"/admin/risk/riskdecision/{d.pk}/change/").status_code == 200
    for url in ("/admin/risk/riskdecision/add/", f"/admin/risk/riskdecision/{d.pk}/delete/",
                "/admin/trading/order/add/", "/admin/trading/executionintent/add/", "/admin/trading/position/add/",
                "/admin/trading/fill/add/", "/admin/trading/reconciliationrun/add/", "/admin/risk/dailyequity/add/"):
        assert admin_client.get(url).status_code == 403, url


def test_execution_records_render_in_the_admin(admin_client, settings):
    from tests.support.execution import build_market
    from trading.exchanges.account import use_gateway
    from trading.execution.services import intent_create, intent_process
    from trading.models import ExecutionIntent, Order, Position

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    build_market()
    try:
        intent, _ = intent_create(key="adm-1", source="manual", symbol="BTC/USDT:USDT", side="buy",
                                  amount=Decimal("0.01"), strategy="market", trace_id="trace-admin-0001")
        intent_process(intent.pk)
    finally:
        use_gateway(None)
    order = Order.objects.get()
    pos = Position.objects.get()
    assert ExecutionIntent.objects.get().status == "done"
    for url, needle in (
        ("/admin/trading/order/?q=" + order.client_order_id, order.client_order_id),
        ("/admin/trading/executionintent/?q=trace-admin-0001", "adm-1"),
        ("/admin/trading/position/?status__exact=open", "BTC/USDT:USDT"),
        (f"/admin/trading/order/{order.pk}/change/", order.client_order_id),
        (f"/admin/trading/position/{pos.pk}/change/", "BTC/USDT:USDT"),
        ("/admin/trading/fill/?q=" + order.client_order_id, "taker"),
        ("/admin/trading/reconciliationrun/", "first_order"),
    ):
        resp = admin_client.get(url)
        assert resp.status_code == 200 and needle in resp.content.decode(), url
