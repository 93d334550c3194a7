"""The orchestrator's composition over a loaded state (no database): which layer proposes what, the
room an add gets, the checks that refuse a bad batch, and the settings that stop start-up."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from analytics.orchestration import hfos
from analytics.orchestration.config import ConfigError, orchestration_config
from analytics.orchestration.service import propose, risk_directives
from analytics.orchestration.state import OpenPosition, State
from core.enums import Mode
from risk.domain.policy import Policy

D = Decimal
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
SETTINGS = {"PBA_ENABLED": True, "PBA_MAX_SECTOR_EXPOSURE_PCT": "30", "PBA_MAX_TOTAL_EXPOSURE_PCT": "100",
            "PBA_MAX_POSITIONS": 10, "PBA_REBALANCE_BAND_PCT": "0", "PBA_REBALANCE_INTERVAL_SECONDS": 600,
            "PAL_ENABLED": True, "PAL_MIN_PROFIT_PCT": "5", "PAL_AMPLIFICATION_FACTOR": "1.5",
            "PAL_WINDOW_SECONDS": 14400, "PIL_ENABLED": True, "PIL_INTERVAL_SECONDS": 60,
            "HFOS_PRIORITY_HIERARCHY": ["self_healing", "risk", "hfos", "pba", "pal"],
            "HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT": "5", "HFOS_STATE_MAX_AGE_SECONDS": 300}
CFG = orchestration_config(SETTINGS)


def position(pid, symbol, sector, notional, *, pnl_pct="0", side="long"):
    mark = D(100)
    entry = mark / (1 + D(pnl_pct) / 100) if side == "long" else mark / (1 - D(pnl_pct) / 100)
    return OpenPosition(id=pid, symbol=symbol, symbol_id=pid, sector=sector, side=side, amount=D(notional) / mark,
                        entry_price=entry, mark_price=mark, leverage=1, liquidation_price=None,
                        opened_at=NOW - timedelta(minutes=30), trace_id=f"t{pid}")


def state(*positions, mode=Mode.NORMAL, set_by="", critical=(), signals=None, drawdown="0", pending=None,
          blocked_until=None):
    return State(now=NOW, exchange="paper", equity_usd=D(100_000), drawdown_pct=D(drawdown),
                 positions=list(positions), mode=mode, mode_set_by=set_by, entries_blocked_until=blocked_until,
                 critical_services=None if critical is None else list(critical), signals=signals or {},
                 pending_reductions_usd=pending or {})


def kinds(directives):
    return sorted((d.layer, d.kind, d.symbol) for d in directives)


@pytest.mark.parametrize(("mode", "set_by", "blocked", "expected"), [
    (Mode.NORMAL, "", None, []),
    (Mode.REDUCE_ONLY, "self-healing", None, [("self_healing", "reduce_only", "*")]),
    (Mode.REDUCE_ONLY, "operator", None, [("risk", "reduce_only", "*")]),
    (Mode.HALTED, "governor", None, [("risk", "halt", "*")]),
    (Mode.NORMAL, "", NOW + timedelta(hours=1), [("risk", "block_new_risk", "*")]),
    (Mode.NORMAL, "", NOW - timedelta(hours=1), []),  # a block that has expired blocks nothing
])
def test_the_mode_and_the_governor_become_directives_of_the_layer_that_set_them(mode, set_by, blocked, expected):
    assert kinds(risk_directives(state(mode=mode, set_by=set_by, blocked_until=blocked), "t")) == expected


def _propose(s, cfg=CFG, include_pba=True, last_add_at=None, policy=None, assessments=None):
    return propose(s, cfg, include_pba=include_pba, policy=policy or Policy(), assessments=assessments or {},
                   last_add_at=last_add_at or {}, trace_id="t")


def test_an_over_weight_sector_gets_reductions_and_a_winner_with_its_signal_an_add():
    s = state(position(1, "BTC", "l1", 20_000), position(2, "ETH", "l1", 15_000),
              position(3, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"})
    p = _propose(s)
    assert kinds(p.directives) == [("pal", "add", "DOGE"), ("pba", "reduce", "BTC"), ("pba", "reduce", "ETH")]
    cuts = {d.symbol: d.amount_usd for d in p.directives if d.kind == "reduce"}
    assert D(5_000) <= sum(cuts.values()) <= D("5000.02")  # l1 35 % -> 30 % (each rounded up to the cent)
    add = next(d for d in p.directives if d.kind == "add")
    assert add.amount_usd == D(6_000)  # 1.5 x 4,000, within every room
    assert p.position_of == {"BTC": 1, "ETH": 2, "DOGE": 3}


@pytest.mark.parametrize(("why", "kw", "expected_room"), [
    ("the policy's max position", {"policy": Policy(max_position_usd=D(5_000))}, D(1_000)),
    ("the balancer's sector cap", {"cfg": orchestration_config({**SETTINGS, "PBA_MAX_SECTOR_EXPOSURE_PCT": "6"})},
     D(2_000)),
    ("the balancer's total cap", {"cfg": orchestration_config({**SETTINGS, "PBA_MAX_TOTAL_EXPOSURE_PCT": "5"})},
     D(1_000)),
])
def test_an_add_is_capped_by_the_smallest_room(why, kw, expected_room):
    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"})
    adds = [d for d in _propose(s, **kw).directives if d.kind == "add"]
    assert [d.amount_usd for d in adds] == [expected_room], why


def test_without_the_balancer_its_caps_do_not_bound_an_add():
    cfg = orchestration_config({**SETTINGS, "PBA_ENABLED": False, "PBA_MAX_SECTOR_EXPOSURE_PCT": "6"})
    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"})
    p = _propose(s, cfg=cfg)
    assert [d.amount_usd for d in p.directives if d.kind == "add"] == [D(6_000)] and p.balance is None


@pytest.mark.parametrize(("critical", "drawdown", "expected"), [
    ((), "0", set()),
    (("exec-risk-service",), "0", {("hfos", "block_new_risk", "*")}),
    (None, "0", {("hfos", "block_new_risk", "*")}),  # the health graph unknown: no new risk
    ((), "6", {("hfos", "block_amplification", "*")}),
])
def test_hfos_own_rules_join_the_proposal(critical, drawdown, expected):
    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"}, critical=critical,
              drawdown=drawdown)
    p = _propose(s)
    assert {k for k in kinds(p.directives) if k[0] == "hfos"} == expected
    resolution = hfos.resolve(p.directives)
    assert any(d.kind == "add" for d in resolution.accepted) is (not expected)


def test_between_the_balancers_passes_its_reductions_stand_but_are_not_carried_out():
    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), position(2, "BTC", "l1", 40_000))
    s.signals = {"DOGE": "long"}
    p = _propose(s, include_pba=False, last_add_at={1: NOW - timedelta(hours=1)})  # DOGE added an hour ago
    assert kinds(p.directives) == [("pba", "reduce", "BTC")] and set(p.directives) == p.standing
    assert "carried out by the balancer's next pass" in p.directives[0].reason


def test_an_add_against_a_reduction_already_on_its_way_loses_in_a_pass_without_the_balancer():
    # The balancer closes DOGE (beyond the count); 60 s later, before the close fills, PAL must not
    # add to it.
    cfg = orchestration_config({**SETTINGS, "PBA_MAX_POSITIONS": 1})
    s = state(position(1, "ETH", "l1", 9_000), position(2, "DOGE", "meme", 2_000, pnl_pct="8"),
              signals={"DOGE": "long"}, pending={"DOGE": D(2_000)})
    p = _propose(s, cfg=cfg, include_pba=False)
    standing = [d for d in p.directives if d in p.standing]
    assert kinds(standing) == [("pba", "reduce", "DOGE")] and standing[0].reason == "a reduction already on its way"
    r = hfos.resolve(p.directives, cfg.hierarchy)
    assert [(o.directive.kind, o.by.layer) for o in r.overruled] == [("add", "pba")]


def test_a_halted_system_gets_no_reductions_that_could_only_be_refused():
    s = state(position(1, "BTC", "l1", 40_000), mode=Mode.HALTED, set_by="operator")
    p = _propose(s)
    assert kinds(p.directives) == [("risk", "halt", "*")] and p.balance is None


def test_a_position_with_an_exit_in_flight_gets_no_add():
    pos = position(1, "DOGE", "meme", 4_000, pnl_pct="8")
    from dataclasses import replace

    s = state(replace(pos, exit_pending=True), signals={"DOGE": "long"})
    assert not [d for d in _propose(s).directives if d.kind == "add"]


def test_entries_still_being_worked_use_up_the_room_as_the_validator_counts_them():
    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"})
    s.in_flight_entries_usd = {"DOGE": D(3_000)}
    adds = [d.amount_usd for d in _propose(s, policy=Policy(max_position_usd=D(10_000))).directives if d.kind == "add"]
    assert adds == [D(3_000)]  # 10,000 - 4,000 held - 3,000 being worked


def test_a_winning_short_with_its_signal_gets_an_add_and_a_long_signal_does_not_agree():
    short = position(1, "ETH", "l1", 4_000, pnl_pct="8", side="short")
    assert [d.amount_usd for d in _propose(state(short, signals={"ETH": "short"})).directives
            if d.kind == "add"] == [D(6_000)]
    assert not [d for d in _propose(state(short, signals={"ETH": "long"})).directives if d.kind == "add"]


def test_an_unknown_days_drawdown_blocks_amplification():
    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"})
    s.drawdown_pct = None
    p = _propose(s)
    assert ("hfos", "block_amplification", "*") in kinds(p.directives)
    assert not [d for d in hfos.resolve(p.directives).accepted if d.kind == "add"]


def test_without_position_intelligence_a_profitable_position_counts_as_a_winner():
    from analytics.orchestration.intelligence import Assessment

    s = state(position(1, "DOGE", "meme", 4_000, pnl_pct="8"), signals={"DOGE": "long"})
    at_risk = {1: Assessment("at_risk", -0.2, D(8), ("volatility spiked",))}
    assert not [d for d in _propose(s, assessments=at_risk).directives if d.kind == "add"]
    assert [d for d in _propose(s, assessments={}).directives if d.kind == "add"]


@pytest.mark.parametrize(("directive", "message"), [
    (hfos.Directive("pal", "add", "NOPE", "x", D(10)), "unknown symbol NOPE"),
    (hfos.Directive("pba", "reduce", "BTC", "x", D("1000.01")), "reduction of 1000.01 USD is bigger than the position"),
    (hfos.Directive("pba", "reduce", "*", "x", D(1)), "reduce needs one symbol"),
    (hfos.Directive("pal", "add", "ETH", "x", D(1)), "no open position in ETH"),
])
def test_a_batch_with_one_bad_directive_is_refused_whole_with_the_reason(directive, message):
    good = hfos.Directive("pba", "reduce", "BTC", "x", D(10))
    with pytest.raises(hfos.HfosError, match=message):
        hfos.check_directives([good, directive], {"BTC": D(1000)}, known_symbols={"BTC", "ETH"})
    hfos.check_directives([good, hfos.Directive("hfos", "block_new_risk", "*", "x")], {"BTC": D(1000)})


@pytest.mark.parametrize(("change", "message"), [
    ({"HFOS_PRIORITY_HIERARCHY": ["self_healing", "risk", "hfos", "pba", "pal", "oracle"]},
     r"unknown layer\(s\) 'oracle'"),
    ({"HFOS_PRIORITY_HIERARCHY": ["risk", "hfos", "pba", "pal"]}, "leaves out self_healing"),
    ({"PBA_MAX_SECTOR_EXPOSURE_PCT": "0"}, r"max_sector_exposure_pct must be in \(0, 100\] %, got 0"),
    ({"PBA_MAX_TOTAL_EXPOSURE_PCT": "150"}, r"max_total_exposure_pct must be in \(0, 100\] %, got 150"),
    ({"PBA_MAX_POSITIONS": 0}, "max_positions must be a whole number >= 1"),
    ({"PAL_MIN_PROFIT_PCT": "-1"}, r"min_profit_pct must be in \(0, 100\]"),
    ({"PAL_AMPLIFICATION_FACTOR": "abc"}, "PAL_AMPLIFICATION_FACTOR|factor"),
    ({"HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT": "0"}, "HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT must be in"),
    ({"HFOS_STATE_MAX_AGE_SECONDS": 0}, "HFOS_STATE_MAX_AGE_SECONDS must be > 0"),
])
def test_bad_settings_are_refused_with_the_variable_named(change, message):
    with pytest.raises(ConfigError, match=message):
        orchestration_config({**SETTINGS, **change})


def test_django_settings_stop_start_up_on_a_bad_hierarchy():
    import os
    import subprocess
    import sys

    env = {**os.environ, "HFOS_PRIORITY_HIERARCHY": "pal,pba,hfos,risk,oracle"}
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "HFOS_PRIORITY_HIERARCHY" in out.stderr and "oracle" in out.stderr
