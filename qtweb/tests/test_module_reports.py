"""The modules each service reports into the health graph (qtweb.health.status.report_module):
the RL sizer and the universe scanner of the ai-service; risk, the executor and reconciliation of
the exec-risk service. HEALTHY when the last run did its work, DEGRADED with the reason when it
failed or refused; the work itself is never changed by the report.

In-process on the real paper exchange, PostgreSQL and Redis (where the reports live)."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from qtweb.events.schemas import build_envelope
from qtweb.health.status import module_reports, service_statuses

D = Decimal


@pytest.fixture
def paper_market(db, settings, clean_cache):
    """The paper exchange with fresh prices and 100k USDT; the reports cleared before and after
    (they live in Redis and outlive each test's database)."""
    from tests.support.execution import build_market
    from trading.exchanges.account import use_gateway

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    yield build_market()
    use_gateway(None)


def _report(service: str, module: str) -> dict:
    return module_reports(service)[module]


def _signal():
    return build_envelope("signal.generated", {
        "symbol": "BTC/USDT:USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.9, "score": 0.8,
        "ensemble_agreement": 1.0, "models_voted": 4}, trace_id=uuid.uuid4().hex, source="ai-service")


# --- ai-service -------------------------------------------------------------------------------


def test_rl_agent_reports_the_serving_sizer_and_a_refusal_to_size(paper_market, settings, tmp_path):
    from ai.sizing import agent as agent_mod
    from ai.sizing.services import size_signal
    from trading.snapshots import snapshot_forget

    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")  # no trained PPO agent here
    agent_mod._cache.clear()
    snapshot_forget("paper")
    decision = size_signal(_signal())  # the account snapshot is missing: no size
    assert decision.data().final_size_usd == 0
    report = _report("ai-service", "rl_agent")
    assert report["status"] == "DEGRADED"
    assert report["reason"] == "refused to size: no account snapshot of paper from the execution side yet"
    assert service_statuses()["ai-service"]["status"] != "HEALTHY"

    explicit = {"equity_usd": D("100000"), "allowed_size_usd": D("10000"), "drawdown": 0.0, "exposure": 0.0}
    settings.RL_SIZING_MODE = "kelly"
    assert size_signal(_signal(), **explicit).data().final_size_usd > 0
    report = _report("ai-service", "rl_agent")
    assert report["status"] == "HEALTHY" and report["sizer"] == "kelly" and "RL_SIZING_MODE=kelly" in report["reason"]

    settings.RL_SIZING_MODE = "ppo"  # asked for PPO, none loadable: sizing goes on, on Kelly
    assert size_signal(_signal(), **explicit).data().final_size_usd > 0
    report = _report("ai-service", "rl_agent")
    assert report["status"] == "DEGRADED" and "no loadable PPO agent" in report["reason"]


def test_universe_scanner_reports_the_symbols_ranked_or_why_not(paper_market, settings):
    from ai.universe.services import scan_universe

    snap = scan_universe()
    report = _report("ai-service", "universe_scanner")
    assert report["status"] == "HEALTHY" and report["ranked"] == len(snap.ranked) > 0
    assert report["reason"].startswith(f"{len(snap.ranked)} symbols ranked")

    with pytest.raises(ValueError):
        scan_universe(top_n=0)
    report = _report("ai-service", "universe_scanner")
    assert report["status"] == "DEGRADED" and report["reason"].startswith("scan failed: ValueError")

    settings.MARKET_EXCHANGE = "nowhere"  # an exchange without active symbols: nothing to rank
    scan_universe(exchange="nowhere")
    report = _report("ai-service", "universe_scanner")
    assert report["status"] == "DEGRADED" and report["reason"].startswith("no symbol ranked")


# --- exec-risk-service ----------------------------------------------------------------------------


def _manual(key: str, **kw):
    from trading.execution.services import intent_create, intent_process

    intent, _ = intent_create(key=key, source="manual", symbol=kw.pop("symbol", "BTC/USDT:USDT"), side="buy",
                              amount=D(kw.pop("amount", "0.05")), strategy="market", **kw)
    return intent_process(intent.pk)


def test_risk_reports_a_validation_that_ran_and_one_that_could_not(paper_market, monkeypatch):
    from risk.services import validation
    from risk.services.validation import IntentRequest, intent_validate

    req = IntentRequest(symbol="BTC/USDT:USDT", side="buy", size_usd=D("1000"))
    verdict, _ = intent_validate(req, record=False)
    report = _report("exec-risk-service", "risk")
    assert report["status"] == "HEALTHY" and report["approved"] is verdict.approved
    assert report["reason"].startswith("last validation ran: buy BTC/USDT:USDT")
    # A rejection is the validator doing its job, not a fault.
    intent_validate(IntentRequest(symbol="BTC/USDT:USDT", side="buy", size_usd=D("1000"), leverage=100),
                    record=False)
    report = _report("exec-risk-service", "risk")
    assert report["status"] == "HEALTHY" and report["approved"] is False and "rejected: " in report["reason"]

    def unreadable_account():
        raise ConnectionError("account view unavailable")

    monkeypatch.setattr(validation.trading_sel, "account_view", unreadable_account)
    with pytest.raises(ConnectionError):
        intent_validate(req, record=False)
    report = _report("exec-risk-service", "risk")
    assert report["status"] == "DEGRADED"
    assert report["reason"] == ("validation could not run for BTC/USDT:USDT: ConnectionError: "
                                "account view unavailable")


def test_executor_reports_the_last_placement_or_the_exchange_error(paper_market, monkeypatch):
    from trading.exchanges import errors

    assert _manual("exec-report-1").status == "done"
    report = _report("exec-risk-service", "executor")
    assert report["status"] == "HEALTHY" and report["reason"].endswith("placed (filled)")

    def no_funds(*args, **kwargs):
        raise errors.InsufficientFunds("margin 10 USDT short")

    monkeypatch.setattr(paper_market["gateway"], "create_order", no_funds)
    intent = _manual("exec-report-2")
    assert intent.status == "failed"  # the work is what it was without the report
    report = _report("exec-risk-service", "executor")
    assert report["status"] == "DEGRADED"
    assert "rejected: InsufficientFunds: margin 10 USDT short" in report["reason"]
    assert service_statuses()["exec-risk-service"]["status"] != "HEALTHY"


def test_reconciliation_reports_a_clean_run_or_the_count_of_mismatches(paper_market):
    from tests.support.execution import last_close
    from trading.execution.reconciliation import reconcile

    assert reconcile(reason="test").ok
    report = _report("exec-risk-service", "reconciliation")
    assert report["status"] == "HEALTHY" and report["mismatches"] == 0

    price = float((last_close("ETH/USDT:USDT") * D("0.99")).quantize(D("0.01")))
    paper_market["gateway"].create_order("ETH/USDT:USDT", "limit", "buy", 1, price, {"clientOrderId": "by-hand-9"})
    run = reconcile(reason="test")
    report = _report("exec-risk-service", "reconciliation")
    assert report["status"] == "DEGRADED" and report["mismatches"] == len(run.mismatches) >= 1
    assert report["reason"].startswith(f"{len(run.mismatches)} mismatch(es) with paper (") and "external_order" in \
        report["reason"]
