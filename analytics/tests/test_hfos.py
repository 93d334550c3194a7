"""AI-HFOS's rule (pure): conflicts decided by the priority hierarchy, every directive accounted for."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.orchestration.hfos import (
    ADDS,
    LAYERS,
    REDUCES,
    Directive,
    HfosError,
    check_hierarchy,
    own_directives,
    resolve,
)

D = Decimal


def d(layer, kind, symbol="ETH", amount="0", reason="r"):
    return Directive(layer, kind, symbol, reason, D(amount))


def test_pba_reduce_beats_a_pal_add_on_the_same_symbol_and_the_reason_is_recorded():
    add, cut = d("pal", "add", amount="1500", reason="winner +7%"), d("pba", "reduce", amount="2000", reason="l1 40%")
    r = resolve([add, cut])
    assert r.accepted == (cut,)
    (o,) = r.overruled
    assert o.directive == add and o.by == cut
    assert o.why == ("pba outranks pal in self_healing > risk > hfos > pba > pal: reduce ETH stands against add ETH")


def test_a_self_healing_reduce_only_stops_a_pal_add_on_every_symbol():
    r = resolve([d("pal", "add", "SOL"), d("self_healing", "reduce_only", "*"), d("pba", "reduce", "BTC")])
    assert [x.kind for x in r.accepted] == ["reduce_only", "reduce"]
    assert r.overruled[0].directive.kind == "add" and r.overruled[0].by.layer == "self_healing"


def test_a_different_order_decides_the_other_way():
    order = ("risk", "self_healing", "hfos", "pal", "pba")
    r = resolve([d("pal", "add"), d("pba", "reduce")], order)
    assert [x.layer for x in r.accepted] == ["pal"]


def test_two_layers_reducing_one_symbol_reduce_it_once():
    r = resolve([d("pba", "reduce", amount="100"), d("risk", "reduce", amount="300")])
    assert [x.layer for x in r.accepted] == ["risk"] and r.overruled[0].why.startswith("superseded")


def test_directives_on_different_symbols_do_not_conflict():
    r = resolve([d("pba", "reduce", "BTC"), d("pal", "add", "ETH")])
    assert len(r.accepted) == 2 and not r.overruled


def test_a_block_of_amplification_stops_adds_but_not_entries():
    r = resolve([d("hfos", "block_amplification", "*"), d("pal", "add", "ETH"), d("pba", "enter", "BTC")])
    assert {(x.layer, x.kind) for x in r.accepted} == {("hfos", "block_amplification"), ("pba", "enter")}


@pytest.mark.parametrize(("hierarchy", "message"), [
    (("self_healing", "risk", "hfos", "pba", "pal", "moon"), "unknown layer(s) 'moon'"),
    (("self_healing", "risk", "hfos", "pba"), "leaves out pal"),
    (("self_healing", "risk", "risk", "hfos", "pba", "pal"), "names risk more than once"),
    (("pal", "self_healing", "risk", "hfos", "pba"), "must rank self_healing and risk above hfos, pba and pal"),
    (("self_healing", "hfos", "risk", "pba", "pal"), "must rank self_healing and risk above"),
])
def test_a_bad_priority_list_is_refused_with_the_reason(hierarchy, message):
    with pytest.raises(HfosError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_hierarchy(hierarchy)
    with pytest.raises(HfosError):
        resolve([d("pal", "add")], hierarchy)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layer": "oracle"}, "unknown layer 'oracle'"),
    ({"kind": "double_down"}, "unknown directive kind 'double_down'"),
    ({"symbol": ""}, "symbol must not be empty"),
    ({"amount_usd": D(-1)}, "amount_usd must be >= 0"),
])
def test_a_bad_directive_is_refused_with_the_reason(kwargs, message):
    args = {"layer": "pal", "kind": "add", "symbol": "ETH", "reason": "r", **kwargs}
    with pytest.raises((HfosError, ValueError), match=message):
        Directive(**args)


@pytest.mark.parametrize(("critical", "drawdown", "kinds"), [
    ((), D(1), []),
    (("exec-risk-service",), D(1), ["block_new_risk"]),
    ((), D("5.01"), ["block_amplification"]),
    ((), D(5), []),
    ((), None, ["block_amplification"]),  # unknown drawdown: fail closed
])
def test_hfos_own_rules(critical, drawdown, kinds):
    out = own_directives(critical_services=critical, drawdown_pct=drawdown, max_drawdown_for_amplification_pct=D(5))
    assert [x.kind for x in out] == kinds and all(x.symbol == "*" for x in out)


directives = st.lists(st.builds(Directive, layer=st.sampled_from(LAYERS), kind=st.sampled_from(sorted(ADDS | REDUCES)),
                                symbol=st.sampled_from(["BTC", "ETH", "SOL", "*"]), reason=st.just("r")),
                      max_size=12)


# Every order the settings accept: the protecting layers first (either way), the others after.
orders = st.tuples(st.permutations(["self_healing", "risk"]), st.permutations(["hfos", "pba", "pal"])).map(
    lambda t: (*t[0], *t[1]))


@settings(max_examples=300, deadline=None)
@given(directives, orders, st.randoms())
def test_every_directive_is_accounted_for_no_conflict_survives_and_order_does_not_matter(ds, order, rnd):
    r = resolve(ds, order)
    assert sorted(map(repr, [*r.accepted, *(o.directive for o in r.overruled)])) == sorted(map(repr, ds))
    rank = {layer: i for i, layer in enumerate(order)}
    for a in r.accepted:
        for b in r.accepted:
            if a.adds_risk and not b.adds_risk and (a.symbol == b.symbol or "*" in (a.symbol, b.symbol)):
                assert b.kind == "block_amplification" and a.kind != "add"
    for o in r.overruled:
        assert rank[o.by.layer] <= rank[o.directive.layer]
    shuffled = list(ds)
    rnd.shuffle(shuffled)
    assert resolve(shuffled, order) == r
