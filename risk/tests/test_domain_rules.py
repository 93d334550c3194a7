"""The pure risk core: Policy values and the pre-trade validator (no database)."""
from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from risk.domain.policy import POLICY_FIELDS, Policy, PolicyError, validate_policy_values
from risk.domain.rules import RULES, Exposure, Intent, OpenOrder, Snapshot, Verdict, validate

D = Decimal
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


# --- Policy --------------------------------------------------------------------------------------


def test_policy_defaults_are_the_design_values():
    p = Policy()
    assert (p.version, p.max_leverage, p.max_position_usd, p.max_open_positions) == (1, 20, D("10000"), 10)
    assert (p.max_daily_drawdown_pct, p.emergency_drawdown_pct, p.emergency_consecutive_losses) == (D(10), D(15), 5)
    assert (p.max_slippage_pct, p.retry_attempts, p.retry_delay_seconds) == (D("0.5"), 3, D(1))
    assert (p.price_collar_pct, p.reference_price_max_age_seconds, p.max_orders_per_minute) == (D(2), 120, 30)
    assert p.min_confidence == D("0.6")
    assert (p.symbol_allowlist, p.symbol_denylist, p.sector_exposure_pct) == ((), (), ())
    assert (p.max_total_exposure_pct, p.default_sector_exposure_pct, p.flatten_on_emergency) == (D(300), D(100), True)
    assert (p.stop_loss_atr_multiple, p.take_profit_atr_multiple, p.trailing_stop_atr_multiple) == (D(2), D(3), D(2))
    assert p.break_even_trigger_pct == D(1)
    assert "version" not in POLICY_FIELDS and len(POLICY_FIELDS) == 23


def test_policy_round_trips_through_json_values():
    p = Policy.from_values({
        "max_leverage": "7", "max_position_usd": 2500.5, "min_confidence": "0.55", "symbol_allowlist": ["BTC/USDT"],
        "symbol_denylist": "DOGE/USDT, PEPE/USDT", "sector_exposure_pct": {"meme": "25", "L1": 150},
        "flatten_on_emergency": "false", "version": 4})
    assert p.max_leverage == 7 and p.max_position_usd == D("2500.5") and p.version == 4
    assert p.symbol_denylist == ("DOGE/USDT", "PEPE/USDT")
    assert p.sector_exposure_pct == (("L1", D(150)), ("meme", D(25)))
    assert p.sector_cap_pct("meme") == D(25) and p.sector_cap_pct("defi") == D(100) and p.sector_cap_pct("") == D(100)
    assert p.flatten_on_emergency is False
    values = json.loads(json.dumps(p.to_values(include_version=True)))
    assert Policy.from_values(values) == p
    assert Policy.from_values(p.to_values()) == replace(p, version=1)
    assert Policy.from_values(Policy().to_values()) == Policy()
    assert set(p.to_values()) == set(POLICY_FIELDS)
    assert p.to_values()["max_position_usd"] == "2500.5"
    assert Policy.from_values({"max_position_usd": "1E+4"}).to_values()["max_position_usd"] == "10000"


def test_policy_partial_values_keep_the_base():
    base = Policy.from_values({"max_leverage": 5})
    p = validate_policy_values({"max_open_positions": 3}, base=base)
    assert (p.max_leverage, p.max_open_positions) == (5, 3)


def test_policy_errors_list_every_bad_field():
    with pytest.raises(PolicyError) as exc:
        Policy.from_values({
            "max_leverage": 126, "max_position_usd": "-5", "max_open_positions": 0, "max_daily_drawdown_pct": "0",
            "emergency_drawdown_pct": "101", "max_slippage_pct": "abc", "retry_attempts": -1,
            "retry_delay_seconds": "NaN", "price_collar_pct": float("inf"), "min_confidence": "1.5",
            "max_orders_per_minute": 2.5, "reference_price_max_age_seconds": True, "flatten_on_emergency": "maybe",
            "sector_exposure_pct": {"meme": 0}, "symbol_allowlist": ["BTC/USDT", ""], "bogus": 1, "other": 2,
        })
    errors = exc.value.errors
    assert set(errors) == {
        "max_leverage", "max_position_usd", "max_open_positions", "max_daily_drawdown_pct", "emergency_drawdown_pct",
        "max_slippage_pct", "retry_attempts", "retry_delay_seconds", "price_collar_pct", "min_confidence",
        "max_orders_per_minute", "reference_price_max_age_seconds", "flatten_on_emergency", "sector_exposure_pct",
        "symbol_allowlist", "unknown_fields"}
    assert "[1, 125]" in errors["max_leverage"] and "126" in errors["max_leverage"]
    assert "negative" in errors["max_position_usd"]
    assert "zero" in errors["max_open_positions"] and "zero" in errors["max_daily_drawdown_pct"]
    assert "(0, 100]" in errors["emergency_drawdown_pct"]
    assert "not a number" in errors["max_slippage_pct"]
    assert "finite" in errors["retry_delay_seconds"] and "finite" in errors["price_collar_pct"]
    assert "whole number" in errors["max_orders_per_minute"]
    assert "bogus" in errors["unknown_fields"] and "other" in errors["unknown_fields"]
    assert "meme" in errors["sector_exposure_pct"]
    msg = str(exc.value)
    for field in errors:
        assert field in msg
    assert isinstance(exc.value, ValueError)


def test_policy_cross_field_errors():
    with pytest.raises(PolicyError) as exc:
        Policy.from_values({"max_daily_drawdown_pct": 12, "emergency_drawdown_pct": 11,
                            "symbol_allowlist": ["BTC/USDT", "ETH/USDT"], "symbol_denylist": ["ETH/USDT"]})
    assert ">= max_daily_drawdown_pct (12)" in exc.value.errors["emergency_drawdown_pct"]
    assert "ETH/USDT" in exc.value.errors["symbol_denylist"]
    Policy.from_values({"max_daily_drawdown_pct": 12, "emergency_drawdown_pct": 12})  # equal is fine
    with pytest.raises(PolicyError, match="mapping"):
        Policy.from_values(["max_leverage", 3])


# --- the validator: one rule at a time -------------------------------------------------------------

POLICY = Policy()
BASE_POSITIONS = (
    Exposure("BTC/USDT", "long", D("2000"), "L1"),
    Exposure("ETH/USDT", "short", D("1000"), "L1"),
    Exposure("UNI/USDT", "long", D("500"), "DEFI"),
)
BASE_ORDERS = (
    OpenOrder("SOL/USDT", "buy", D("500"), False, "L1"),
    OpenOrder("BTC/USDT", "sell", D("300"), True, "L1"),
)
BASE_INTENT = Intent(symbol="BTC/USDT", side="buy", size_usd=D("1000"), leverage=5, confidence=D("0.7"),
                     intent_key="k-new", sector="L1", price=D("50100"))


def base_snapshot(**changes) -> Snapshot:
    s = Snapshot(policy=POLICY, mode="NORMAL", equity_usd=D("10000"), day_start_equity_usd=D("10000"),
                 positions=BASE_POSITIONS, open_orders=BASE_ORDERS, intent=BASE_INTENT, reference_price=D("50000"),
                 reference_price_age_seconds=5.0, orders_last_minute=3, recent_intent_keys=frozenset({"k-old"}),
                 entries_blocked_until=None, now=NOW)
    return replace(s, **changes)


def with_intent(**changes) -> Snapshot:
    return base_snapshot(intent=replace(BASE_INTENT, **changes))


def with_policy(**values) -> Snapshot:
    return base_snapshot(policy=Policy.from_values(values))


def test_baseline_is_approved():
    v = validate(base_snapshot())
    assert v.approved and v.reasons == () and v.reason == "approved"
    # rooms: position 10000-2000, total 30000-4000, sector L1 10000-3500 (BTC+ETH+SOL order)
    assert v.max_allowed_size_usd == D("6500.00")
    assert v.policy_version == 1


ONE_RULE_CASES = {
    "mode REDUCE_ONLY": ("mode", lambda: base_snapshot(mode="REDUCE_ONLY")),
    "mode HALTED": ("mode", lambda: base_snapshot(mode="HALTED")),
    "mode unknown": ("mode", lambda: base_snapshot(mode="PAUSED")),
    "leverage too high": ("leverage", lambda: with_intent(leverage=21)),
    "leverage zero": ("leverage", lambda: with_intent(leverage=0)),
    "leverage not int": ("leverage", lambda: with_intent(leverage=2.5)),
    "position_size": ("position_size", lambda: with_policy(max_position_usd=2500)),
    "position_size counts open entry orders": (
        "position_size", lambda: base_snapshot(policy=Policy.from_values({"max_position_usd": 3400}),
                                               open_orders=(*BASE_ORDERS, OpenOrder("BTC/USDT", "buy", D("500"),
                                                                                    False, "L1")))),
    "open_positions": ("open_positions", lambda: base_snapshot(
        policy=Policy.from_values({"max_open_positions": 4}), intent=replace(BASE_INTENT, symbol="AVAX/USDT"))),
    "daily_drawdown": ("daily_drawdown", lambda: base_snapshot(equity_usd=D("9000"))),
    "daily_drawdown blocked until": ("daily_drawdown", lambda: base_snapshot(
        entries_blocked_until=NOW + timedelta(hours=1))),
    "total_exposure": ("total_exposure", lambda: with_policy(max_total_exposure_pct=45)),
    "sector_exposure": ("sector_exposure", lambda: with_policy(sector_exposure_pct={"L1": 40})),
    "sector_exposure unassigned": ("sector_exposure", lambda: base_snapshot(
        policy=Policy.from_values({"default_sector_exposure_pct": 5}), intent=replace(BASE_INTENT, sector=""))),
    "price_collar off": ("price_collar", lambda: with_intent(price=D("51500"))),
    "price_collar no ref": ("price_collar", lambda: base_snapshot(reference_price=None)),
    "price_collar stale": ("price_collar", lambda: base_snapshot(reference_price_age_seconds=121.0)),
    "price_collar no age": ("price_collar", lambda: base_snapshot(reference_price_age_seconds=None)),
    "price_collar NaN age": ("price_collar", lambda: base_snapshot(reference_price_age_seconds=float("nan"))),
    "price_collar bad ref": ("price_collar", lambda: base_snapshot(reference_price=D(0))),
    "order_rate": ("order_rate", lambda: base_snapshot(orders_last_minute=30)),
    "min_confidence": ("min_confidence", lambda: with_intent(confidence=D("0.59"))),
    "duplicate_intent": ("duplicate_intent", lambda: with_intent(intent_key="k-old")),
    "symbol denied": ("symbol_allowed", lambda: with_policy(symbol_denylist=["BTC/USDT"])),
    "symbol not allowed": ("symbol_allowed", lambda: with_policy(symbol_allowlist=["ETH/USDT"])),
    "reduce_only too big": ("reduce_only", lambda: with_intent(side="sell", reduce_only=True, size_usd=D("2500"))),
    "reduce_only nothing to reduce": ("reduce_only", lambda: with_intent(reduce_only=True)),
    "size zero": ("size", lambda: with_intent(size_usd=D(0))),
    "size negative": ("size", lambda: with_intent(size_usd=D("-5"))),
    "size NaN": ("size", lambda: with_intent(size_usd=D("NaN"))),
    "size infinite": ("size", lambda: with_intent(size_usd=D("Infinity"))),
    "equity day start zero": ("equity", lambda: base_snapshot(day_start_equity_usd=D(0))),
}


@pytest.mark.parametrize("case", list(ONE_RULE_CASES))
def test_each_rule_alone(case):
    rule, build = ONE_RULE_CASES[case]
    v = validate(build())
    assert not v.approved
    assert v.rules == (rule,), v.reasons
    assert v.reason == v.reasons[0].message


def test_every_rule_name_is_covered_by_a_case():
    assert {rule for rule, _ in ONE_RULE_CASES.values()} == set(RULES)


@pytest.mark.parametrize("changes", [
    {"mode": "SHADOW"},
    {"intent": replace(BASE_INTENT, leverage=20)},  # at the limit
    {"intent": replace(BASE_INTENT, confidence=None)},  # manual order
    {"intent": replace(BASE_INTENT, confidence=D("0.6"))},  # at the minimum
    {"intent": replace(BASE_INTENT, price=None)},  # market order, fresh reference
    {"intent": replace(BASE_INTENT, price=D("51000"))},  # exactly 2 %
    {"intent": replace(BASE_INTENT, intent_key="")},
    {"reference_price_age_seconds": 120.0},  # exactly the max age
    {"orders_last_minute": 29},
    {"equity_usd": D("9000.01")},  # drawdown 9.9999 %
    {"entries_blocked_until": NOW},  # block ends now
    {"entries_blocked_until": NOW - timedelta(seconds=1)},
    {"intent": replace(BASE_INTENT, size_usd=D("6500"))},  # exactly the sector room
    {"intent": replace(BASE_INTENT, side="sell", sector="L1", symbol="ETH/USDT")},  # adds to a short
    {"intent": replace(BASE_INTENT, side="sell")},  # opposite of the BTC long, not reduce-only: an entry
    {"policy": Policy.from_values({"max_open_positions": 4})},  # BTC is already open
    {"policy": Policy.from_values({"symbol_allowlist": ["BTC/USDT"]})},
    {"mode": "REDUCE_ONLY", "intent": replace(BASE_INTENT, side="sell", reduce_only=True, size_usd=D("2000"))},
    {"policy": Policy.from_values({"symbol_denylist": ["BTC/USDT"]}),
     "intent": replace(BASE_INTENT, side="sell", reduce_only=True, confidence=D("0.1"))},  # reducing a denied one
    {"intent": replace(BASE_INTENT, side="buy", reduce_only=True, symbol="ETH/USDT", size_usd=D("1000"),
                       price=None)},  # closes the ETH short exactly
    {"equity_usd": D("20000"), "day_start_equity_usd": D("10000")},  # a winning day
])
def test_approved_variants(changes):
    v = validate(base_snapshot(**changes))
    assert v.approved, v.reasons


def test_all_failures_are_reported_together():
    s = base_snapshot(
        mode="REDUCE_ONLY", equity_usd=D("8000"), reference_price=None, orders_last_minute=99,
        policy=Policy.from_values({"symbol_denylist": ["BTC/USDT"], "max_position_usd": 100,
                                   "max_open_positions": 1, "max_total_exposure_pct": 10,
                                   "sector_exposure_pct": {"L1": 1}}),
        intent=replace(BASE_INTENT, symbol="BTC/USDT", leverage=99, confidence=D("0.1"), intent_key="k-old"),
        entries_blocked_until=NOW + timedelta(hours=3))
    v = validate(s)
    assert v.rules == ("mode", "leverage", "position_size", "daily_drawdown", "total_exposure", "sector_exposure",
                       "price_collar", "order_rate", "min_confidence", "duplicate_intent", "symbol_allowed")
    assert v.max_allowed_size_usd == 0
    assert v.reason == "; ".join(r.message for r in v.reasons)
    assert "daily drawdown 20.00%" in v.reason and "entries blocked until" in v.reason

    v = validate(base_snapshot(mode="HALTED", intent=replace(BASE_INTENT, reduce_only=True, size_usd=D(-1),
                                                             leverage=0, intent_key="k-old"),
                               orders_last_minute=30, reference_price_age_seconds=999.0))
    assert v.rules == ("mode", "leverage", "price_collar", "order_rate", "duplicate_intent", "reduce_only", "size")

    v = validate(base_snapshot(equity_usd=D(0), day_start_equity_usd=D(-1)))
    assert v.rules == ("equity",)
    assert "equity 0 USD must be positive" in v.reason and "day start equity -1 USD" in v.reason
    v = validate(base_snapshot(equity_usd=D(0)))
    assert v.rules == ("daily_drawdown", "equity")


def test_max_allowed_size():
    # entries: the smallest room, rounded down to the cent
    assert validate(base_snapshot()).max_allowed_size_usd == D("6500.00")
    assert validate(with_policy(max_position_usd="2999.999")).max_allowed_size_usd == D("999.99")
    assert validate(with_policy(max_total_exposure_pct=50)).max_allowed_size_usd == D("1000.00")
    # still reported when only size rules fail
    v = validate(with_policy(max_position_usd=2500))
    assert v.rules == ("position_size",) and v.max_allowed_size_usd == D("500.00")
    v = validate(with_intent(size_usd=D(0)))
    assert v.rules == ("size",) and v.max_allowed_size_usd == D("6500.00")
    # no room left: 0, never negative
    v = validate(with_policy(max_position_usd=1500))
    assert v.max_allowed_size_usd == 0
    # any other rule failing: 0
    for rule in sorted(set(RULES) - {"position_size", "total_exposure", "sector_exposure", "size", "reduce_only"}):
        for case, (r, build) in ONE_RULE_CASES.items():
            if r == rule:
                assert validate(build()).max_allowed_size_usd == 0, case
    # reduce-only: the opposite position, exactly
    odd = (Exposure("BTC/USDT", "long", D("1234.56789"), "L1"),)
    v = validate(base_snapshot(positions=odd, intent=replace(BASE_INTENT, side="sell", reduce_only=True,
                                                             size_usd=D("1234.56789"))))
    assert v.approved and v.max_allowed_size_usd == D("1234.56789")
    assert validate(with_intent(side="sell", reduce_only=True, size_usd=D("2500"))).max_allowed_size_usd == D(2000)
    assert validate(with_intent(reduce_only=True)).max_allowed_size_usd == 0  # no short to reduce
    assert validate(base_snapshot(mode="HALTED", intent=replace(BASE_INTENT, side="sell", reduce_only=True))
                    ).max_allowed_size_usd == 0


def test_sized_at_max_allowed_passes_and_one_cent_more_fails():
    odd = (Exposure("BTC/USDT", "long", D("2000.005"), "L1"),)
    s = base_snapshot(positions=odd, open_orders=(), policy=Policy.from_values({"max_position_usd": 5000}))
    room = validate(s).max_allowed_size_usd
    assert room == D("2999.99")
    assert validate(replace(s, intent=replace(BASE_INTENT, size_usd=room))).approved
    v = validate(replace(s, intent=replace(BASE_INTENT, size_usd=room + D("0.01"))))
    assert v.rules == ("position_size",)
    v = validate(replace(s, intent=replace(BASE_INTENT, size_usd=D("2999.995"))))  # sub-cent over the rounded room
    assert v.rules == ("position_size",)


def test_messages_name_the_numbers():
    s = base_snapshot(positions=(), open_orders=(), intent=replace(BASE_INTENT, size_usd=D("12000")),
                      policy=Policy.from_values({"default_sector_exposure_pct": 500}))
    (r,) = validate(s).reasons
    assert r.message.startswith("size 12000.00 USD would make BTC/USDT long 12000.00 USD > max position 10000 USD")
    msgs = {r.rule: r.message for r in validate(base_snapshot(
        policy=Policy.from_values({"max_position_usd": 2500, "max_total_exposure_pct": 40, "max_leverage": 3,
                                   "sector_exposure_pct": {"L1": 30}, "max_open_positions": 3}),
        intent=replace(BASE_INTENT, symbol="AVAX/USDT", leverage=5, confidence=D("0.5"), price=D("52000")),
        equity_usd=D("8800"), orders_last_minute=31)).reasons}
    assert msgs["leverage"] == "leverage 5x > max leverage 3x"
    assert msgs["open_positions"] == ("AVAX/USDT would be a new symbol but 4 symbols already have positions or "
                                      "entry orders (max open positions 3)")
    assert msgs["daily_drawdown"].startswith("daily drawdown 12.00% (equity 8800.00 USD vs day start 10000.00 USD)"
                                             " >= max daily drawdown 10%")
    assert msgs["total_exposure"] == ("size 1000.00 USD would make gross exposure 5000.00 USD (positions 3500.00 + "
                                      "open entry orders 500.00 + 1000.00) > 40% of equity 8800.00 USD = 3520.00 USD")
    assert msgs["sector_exposure"] == ("size 1000.00 USD would make sector 'L1' exposure 4500.00 USD > 30% of "
                                       "equity 8800.00 USD = 2640.00 USD")
    assert msgs["price_collar"] == "price 52000 is 4.00% from reference 50000 for AVAX/USDT > price collar 2%"
    assert msgs["order_rate"] == "31 orders in the last minute >= max 30 per minute"
    assert msgs["min_confidence"] == "confidence 0.5 < min confidence 0.6"
    (r,) = validate(with_policy(max_position_usd=2500)).reasons
    assert r.message == ("size 1000.00 USD would make BTC/USDT long 3000.00 USD (position 2000.00 + open orders "
                         "0.00 + 1000.00) > max position 2500 USD (room 500.00 USD)")
    (r,) = validate(base_snapshot(reference_price_age_seconds=130.0)).reasons
    assert r.message == "reference price for BTC/USDT is stale (age 130.0 s > max 120 s)"
    (r,) = validate(with_intent(side="sell", reduce_only=True, size_usd=D("2500"))).reasons
    assert r.message == "reduce-only size 2500.00 USD > long position 2000.00 USD on BTC/USDT"
    (r,) = validate(with_intent(reduce_only=True)).reasons
    assert r.message == "reduce-only buy on BTC/USDT needs a short position; there is none"
    (r,) = validate(with_policy(symbol_allowlist=["ETH/USDT"])).reasons
    assert r.message == "BTC/USDT is not in the symbol allowlist (ETH/USDT)"
    (r,) = validate(with_intent(intent_key="k-old")).reasons
    assert "k-old" in r.message and "duplicate" in r.message


def test_inputs_are_coerced_or_refused():
    assert Intent("X", "buy", 100, 1).size_usd == D(100)
    assert Intent("X", "buy", "1.5", 1, confidence=0.7).confidence == D("0.7")
    assert Exposure("X", "long", 5).notional_usd == D(5)
    with pytest.raises(ValueError, match="side"):
        Intent("X", "long", D(1), 1)
    with pytest.raises(ValueError, match="side"):
        Exposure("X", "buy", D(1))
    with pytest.raises(ValueError, match="side"):
        OpenOrder("X", "short", D(1), False)
    with pytest.raises(TypeError):
        Intent("X", "buy", None, 1)
    s = replace(base_snapshot(), equity_usd=10000, day_start_equity_usd="10000", reference_price=50000)
    assert (s.equity_usd, s.day_start_equity_usd, s.reference_price) == (D(10000), D(10000), D(50000))
    assert validate(s).approved


def test_signed_position_notionals_count_by_size():
    s = base_snapshot(positions=(Exposure("BTC/USDT", "short", D("-9500"), "L1"),),
                      intent=replace(BASE_INTENT, side="buy", reduce_only=True, size_usd=D("9500")))
    assert validate(s).approved
    s = base_snapshot(positions=(Exposure("BTC/USDT", "long", D("-9500"), "L1"),))
    assert validate(s).rules == ("position_size", "sector_exposure")


def test_validate_is_fast():
    s = base_snapshot()
    for _ in range(200):
        validate(s)
    samples = []
    for _ in range(2000):
        t0 = time.perf_counter()
        validate(s)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    assert samples[len(samples) // 2] < 0.001  # p50 budget: 1 ms (measured ~10 µs)


# --- the property: what an approval promises -------------------------------------------------------

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "UNI/USDT", "AAVE/USDT", "DOGE/USDT", "XYZ/USDT")
SECTOR_OF = {"BTC/USDT": "L1", "ETH/USDT": "L1", "SOL/USDT": "L1", "UNI/USDT": "DEFI", "AAVE/USDT": "DEFI",
             "DOGE/USDT": "MEME", "XYZ/USDT": ""}
KEYS = ("", "k1", "k2", "k3")


def _cents(n: int) -> Decimal:
    return D(n).scaleb(-2)


def _random_policy(rng: random.Random) -> Policy:
    daily = rng.randint(1, 30)
    allow = rng.choice([(), (), (), (), (), ("BTC/USDT", "ETH/USDT", "SOL/USDT", "UNI/USDT"), ("DOGE/USDT",)])
    deny = rng.choice([(), (), (), (), (), ("DOGE/USDT",), ("XYZ/USDT", "AAVE/USDT")])
    return Policy(
        version=rng.randint(1, 50),
        max_leverage=rng.choice([1, 3, 5, 10, 20, 50, 125]),
        max_position_usd=D(rng.choice([500, 1000, 2500, 5000, 10000, 50000])),
        max_open_positions=rng.randint(1, 8),
        max_daily_drawdown_pct=D(daily), emergency_drawdown_pct=D(daily + 5),
        price_collar_pct=D(rng.choice(["0.5", "1", "2", "5"])),
        reference_price_max_age_seconds=rng.choice([5, 30, 120, 300]),
        max_orders_per_minute=rng.randint(1, 40),
        min_confidence=_cents(rng.randint(0, 100)),
        symbol_allowlist=allow, symbol_denylist=tuple(s for s in deny if s not in allow),
        max_total_exposure_pct=D(rng.choice([50, 100, 200, 300, 500])),
        default_sector_exposure_pct=D(rng.choice([25, 50, 100, 200])),
        sector_exposure_pct=rng.choice([(), (), (("L1", D(150)),), (("DEFI", D(50)), ("MEME", D(10))),
                                        (("", D(20)),)]),
    )


# Policies come from a fixed pool (one draw instead of fifteen: the 10,000-example property stays
# well inside its time budget); the pool spans every range above, the design's defaults first.
_rng = random.Random(20250601)
POLICY_POOL = (Policy(), *(_random_policy(_rng) for _ in range(999)))
policies = st.sampled_from(POLICY_POOL)


# Book notionals carry sub-cent digits (quantity x price); intent sizes are whole cents (see the
# sub-cent test below) so the oracle's exact comparisons match the validator's cent-rounded rooms.
def _book(n_positions: int, n_orders: int, seed: int) -> tuple[tuple[Exposure, ...], tuple[OpenOrder, ...]]:
    rng = random.Random(seed)

    def notional() -> Decimal:
        return D(rng.randint(-5, 60_000_000)).scaleb(-4)

    positions = []
    for _ in range(n_positions):
        sym = rng.choice(SYMBOLS)
        positions.append(Exposure(sym, rng.choice(("long", "short")), notional(), SECTOR_OF[sym]))
    orders = []
    for _ in range(n_orders):
        sym = rng.choice(SYMBOLS)
        orders.append(OpenOrder(sym, rng.choice(("buy", "sell")), notional(), rng.random() < 0.5, SECTOR_OF[sym]))
    return tuple(positions), tuple(orders)


# The book: how many positions / open orders (shrinkable) and a seed for their contents (three
# draws instead of ~25: the 10,000-example property stays well inside its time budget).
books = st.builds(_book, st.integers(0, 6), st.integers(0, 4), st.integers(0, 2**32))
_CHAOS = 30  # each edge case below comes up in about 1 draw in 30


@st.composite
def snapshots(draw, sizes=st.integers(1, 800_000).map(_cents)) -> Snapshot:
    """Mostly plausible snapshots (so a good share is approved), each limit sometimes broken."""
    policy = draw(policies)
    chaos = draw(st.integers(0, _CHAOS - 1))
    equity = D(draw(st.sampled_from([3_000, 10_000, 25_000, 60_000, 150_000])) + draw(st.integers(0, 999)))
    if chaos == 0:
        equity = D(draw(st.integers(-100, 0)))
    day_start = equity * (1 + D(draw(st.integers(-20, 4) if chaos != 1 else st.integers(-5, 40))) / 100)
    if chaos == 2:
        day_start = D(0)
    symbol = draw(st.sampled_from(SYMBOLS))
    side = draw(st.sampled_from(["buy", "sell"]))
    reduce_only = draw(st.integers(0, 3)) == 0
    size = draw(sizes)
    if chaos == 3:
        size = D(draw(st.integers(-1000, 0)))
    leverage = draw(st.integers(1, policy.max_leverage))
    if chaos == 4:
        leverage = draw(st.sampled_from([0, -1, policy.max_leverage + 1, policy.max_leverage + 10]))
    ref = _cents(draw(st.integers(1, 10_000_000)))
    collar_bps = int(policy.price_collar_pct * 100)
    dev_bps = draw(st.integers(-collar_bps, collar_bps) if chaos != 5 else st.integers(-600, 600))
    price = None if draw(st.booleans()) else ref * (1 + D(dev_bps).scaleb(-4))
    min_conf = int(policy.min_confidence * 100)
    confidence = None if draw(st.integers(0, 4)) == 0 else _cents(draw(st.integers(min_conf, 100)))
    if chaos == 6:
        confidence = _cents(draw(st.integers(0, max(min_conf - 1, 0))))
    key = draw(st.sampled_from(KEYS))
    recent = frozenset(draw(st.sampled_from([(), (), (), ("k1",), ("k2", "k3")])))
    age = float(draw(st.integers(0, 4))) + 0.5
    if chaos == 7:  # at the max age (still fresh) or past it
        age = float(policy.reference_price_max_age_seconds + draw(st.integers(0, 100)))
    rate = draw(st.integers(0, policy.max_orders_per_minute - 1))
    if chaos == 8:
        rate = policy.max_orders_per_minute + draw(st.integers(-1, 10))
    blocked = NOW + timedelta(minutes=draw(st.integers(-60, 60))) if chaos == 9 else None
    # Sector: normally the symbol's; sometimes a label that disagrees with the book's.
    sector = SECTOR_OF[symbol] if chaos != 10 else draw(st.sampled_from(["L1", "MEME", ""]))
    positions, open_orders = draw(books)
    if reduce_only and draw(st.booleans()):  # something to reduce, about as big as the order
        held = size * (1 + D(draw(st.integers(-10, 100))) / 100)
        positions = (*positions, Exposure(symbol, "short" if side == "buy" else "long", held, SECTOR_OF[symbol]))
    intent = Intent(symbol=symbol, side=side, size_usd=size, leverage=leverage, reduce_only=reduce_only,
                    confidence=confidence, intent_key=key, sector=sector, price=price)
    return Snapshot(
        policy=policy, mode=draw(st.sampled_from(["NORMAL"] * 6 + ["SHADOW"] * 3 + ["REDUCE_ONLY", "HALTED"])),
        equity_usd=equity, day_start_equity_usd=day_start, positions=positions, open_orders=open_orders,
        intent=intent, reference_price=None if chaos == 11 else ref,
        reference_price_age_seconds=None if chaos == 12 else age, orders_last_minute=rate,
        recent_intent_keys=recent, entries_blocked_until=blocked, now=NOW)


F = Fraction


def expected_failures(s: Snapshot) -> set[str]:
    """The rules the intent breaks, from first principles (exact fractions, the book after the
    trade), independent of the validator's code."""
    p, i = s.policy, s.intent
    entry = not i.reduce_only
    direction = {"buy": "long", "sell": "short"}[i.side]
    size = F(i.size_usd) if i.size_usd.is_finite() else None
    equity, day_start = F(s.equity_usd), F(s.day_start_equity_usd)
    entry_orders = [o for o in s.open_orders if not o.reduce_only]
    failed = set()
    if s.mode == "HALTED" or (s.mode == "REDUCE_ONLY" and entry):
        failed.add("mode")
    if not 1 <= i.leverage <= p.max_leverage:
        failed.add("leverage")
    if size is None or size <= 0:
        failed.add("size")
        size = None  # size limits cannot be judged
    if entry:
        after = sum(abs(F(e.notional_usd)) for e in s.positions if e.symbol == i.symbol and e.side == direction)
        after += sum(abs(F(o.notional_usd)) for o in entry_orders if o.symbol == i.symbol and o.side == i.side)
        if size is not None and after + size > F(p.max_position_usd):
            failed.add("position_size")
        open_before = {e.symbol for e in s.positions} | {o.symbol for o in entry_orders}
        if i.symbol not in open_before and len(open_before | {i.symbol}) > p.max_open_positions:
            failed.add("open_positions")
        if day_start > 0 and (day_start - equity) / day_start * 100 >= F(p.max_daily_drawdown_pct):
            failed.add("daily_drawdown")
        if s.entries_blocked_until is not None and s.now < s.entries_blocked_until:
            failed.add("daily_drawdown")
        if equity <= 0 or day_start <= 0:
            failed.add("equity")
        if equity > 0 and size is not None:
            gross = sum(abs(F(e.notional_usd)) for e in s.positions) + sum(abs(F(o.notional_usd)) for o in entry_orders)
            if gross + size > F(p.max_total_exposure_pct) / 100 * equity:
                failed.add("total_exposure")
            in_sector = (sum(abs(F(e.notional_usd)) for e in s.positions if e.sector == i.sector)
                         + sum(abs(F(o.notional_usd)) for o in entry_orders if o.sector == i.sector))
            cap = dict(p.sector_exposure_pct).get(i.sector, p.default_sector_exposure_pct)
            if in_sector + size > F(cap) / 100 * equity:
                failed.add("sector_exposure")
        if i.confidence is not None and i.confidence < p.min_confidence:
            failed.add("min_confidence")
        if (p.symbol_allowlist and i.symbol not in p.symbol_allowlist) or i.symbol in p.symbol_denylist:
            failed.add("symbol_allowed")
    else:
        reducible = [abs(F(e.notional_usd)) for e in s.positions if e.symbol == i.symbol and e.side != direction]
        if not reducible or (size is not None and size > sum(reducible)):
            failed.add("reduce_only")
    ref, age = s.reference_price, s.reference_price_age_seconds
    fresh = ref is not None and ref > 0 and age is not None and age <= p.reference_price_max_age_seconds
    if not fresh or (i.price is not None and abs(F(i.price) / F(ref) - 1) * 100 > F(p.price_collar_pct)):
        failed.add("price_collar")
    if s.orders_last_minute >= p.max_orders_per_minute:
        failed.add("order_rate")
    if i.intent_key and i.intent_key in s.recent_intent_keys:
        failed.add("duplicate_intent")
    return failed


def post_trade_violations(s: Snapshot) -> list[str]:
    """What is wrong with the world after the intent is filled (empty: every limit holds)."""
    p, i = s.policy, s.intent
    out = []
    if not 1 <= i.leverage <= p.max_leverage:
        out.append("leverage")
    if s.orders_last_minute + 1 > p.max_orders_per_minute:
        out.append("rate")
    if i.intent_key and i.intent_key in s.recent_intent_keys:
        out.append("duplicate")
    ref = s.reference_price
    if ref is None or s.reference_price_age_seconds is None or \
            s.reference_price_age_seconds > p.reference_price_max_age_seconds:
        out.append("no fresh reference")
    elif i.price is not None and abs(i.price - ref) / ref * 100 > p.price_collar_pct:
        out.append("collar")
    if i.reduce_only:
        if s.mode == "HALTED":
            out.append("mode")
        reduced = "short" if i.side == "buy" else "long"
        held = sum((abs(e.notional_usd) for e in s.positions if e.symbol == i.symbol and e.side == reduced), D(0))
        if not 0 < i.size_usd <= held:
            out.append("reduces more than held")
        return out
    if s.mode not in ("NORMAL", "SHADOW"):
        out.append("mode")
    direction = "long" if i.side == "buy" else "short"
    book = [(e.symbol, e.side, abs(e.notional_usd), e.sector) for e in s.positions]
    book += [(o.symbol, "long" if o.side == "buy" else "short", abs(o.notional_usd), o.sector)
             for o in s.open_orders if not o.reduce_only]
    book.append((i.symbol, direction, i.size_usd, i.sector))
    if not i.size_usd > 0:
        out.append("size")
    if sum(n for sym, side, n, _ in book if sym == i.symbol and side == direction) > p.max_position_usd:
        out.append("position")
    # A new symbol may not take the count past the max (an open symbol may grow even when a lowered
    # max leaves the book above it).
    symbols_after = {sym for sym, *_ in book}
    if len(symbols_after) > p.max_open_positions and len(symbols_after) > len({sym for sym, *_ in book[:-1]}):
        out.append("open positions")
    if not s.equity_usd > 0:
        out.append("equity")
    else:
        if sum(n for *_, n, _ in book) > p.max_total_exposure_pct * s.equity_usd / 100:
            out.append("gross exposure")
        cap = dict(p.sector_exposure_pct).get(i.sector, p.default_sector_exposure_pct)
        if sum(n for *_, n, sec in book if sec == i.sector) > cap * s.equity_usd / 100:
            out.append("sector exposure")
    if not s.day_start_equity_usd > 0 or \
            (s.day_start_equity_usd - s.equity_usd) / s.day_start_equity_usd * 100 >= p.max_daily_drawdown_pct:
        out.append("drawdown")
    if s.entries_blocked_until is not None and s.now < s.entries_blocked_until:
        out.append("entries blocked")
    if i.confidence is not None and i.confidence < p.min_confidence:
        out.append("confidence")
    if (p.symbol_allowlist and i.symbol not in p.symbol_allowlist) or i.symbol in p.symbol_denylist:
        out.append("symbol")
    return out


def check_verdict(s: Snapshot, v: Verdict) -> None:
    assert isinstance(v, Verdict)
    assert v.approved == (not v.reasons)
    if not v.approved:
        assert v.reasons and v.reason != "approved"
        assert all(r.message for r in v.reasons)
    assert list(v.rules) == sorted(v.rules, key=RULES.index) and len(set(v.rules)) == len(v.rules)
    assert v.policy_version == s.policy.version
    assert v.max_allowed_size_usd >= 0
    if v.approved:
        assert post_trade_violations(s) == []
        assert s.intent.size_usd <= v.max_allowed_size_usd


@settings(max_examples=10_000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_property_approval_keeps_every_limit(s):
    v = validate(s)
    event("approved" if v.approved else "rejected")
    check_verdict(s, v)
    assert set(v.rules) == expected_failures(s)
    # Clamping to the room the verdict reports clears every size limit.
    if not s.intent.reduce_only and v.max_allowed_size_usd > 0 and not set(v.rules) - {
            "position_size", "total_exposure", "sector_exposure", "size"}:
        clamped = validate(replace(s, intent=replace(s.intent, size_usd=v.max_allowed_size_usd)))
        assert clamped.approved, clamped.reasons


@settings(max_examples=1_000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(sizes=st.integers(1, 15_000_000_000).map(lambda n: D(n).scaleb(-6))))
def test_property_sub_cent_sizes(s):
    check_verdict(s, validate(s))


def test_generator_approves_a_meaningful_share():
    seen: list[tuple[Snapshot, Verdict]] = []

    @settings(max_examples=1_000, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(snapshots())
    def collect(s):
        seen.append((s, validate(s)))

    collect()
    verdicts = [v for _, v in seen]
    approved = sum(v.approved for v in verdicts)
    assert len(verdicts) >= 900
    assert approved / len(verdicts) >= 0.10, approved
    assert sum(1 for s, v in seen if v.approved and s.intent.reduce_only) >= 10
    assert sum(1 for s, v in seen if v.approved and s.positions and s.open_orders) >= 10
    # and every rule is seen failing somewhere in the sample
    assert {r for v in verdicts for r in v.rules} == set(RULES)
