"""System modes: the full transition matrix for operators and for the system (no database)."""
from __future__ import annotations

import itertools

import pytest

from risk.domain.modes import (
    Mode,
    ModeTransitionError,
    allowed_targets,
    allows_entries,
    check_transition,
    restrictiveness,
    sends_orders,
)

N, S, R, H = Mode.NORMAL, Mode.SHADOW, Mode.REDUCE_ONLY, Mode.HALTED

OPERATOR_ALLOWED = {
    (N, S), (N, R), (N, H),
    (S, N), (S, R), (S, H),
    (R, N), (R, S), (R, H),
    (H, R),
}
SYSTEM_ALLOWED = {(N, R), (N, H), (S, R), (S, H), (R, H)}
REASON = "drawdown limit hit"


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Mode, Mode)))
@pytest.mark.parametrize("by_operator", [True, False])
def test_transition_matrix(current, target, by_operator):
    allowed = (current, target) in (OPERATOR_ALLOWED if by_operator else SYSTEM_ALLOWED)
    if allowed:
        assert check_transition(current, target, by_operator=by_operator, reason=REASON) is target
        assert target in allowed_targets(current, by_operator)
    else:
        with pytest.raises(ModeTransitionError) as exc:
            check_transition(current, target, by_operator=by_operator, reason=REASON)
        msg = str(exc.value)
        assert current.value in msg
        assert target not in allowed_targets(current, by_operator)
        if current != target:
            assert target.value in msg
        for t in allowed_targets(current, by_operator):
            assert t.value in msg


def test_allowed_targets():
    assert allowed_targets(N, True) == (S, R, H)
    assert allowed_targets(H, True) == (R,)
    assert allowed_targets("HALTED", False) == ()
    assert allowed_targets(R, False) == (H,)
    assert allowed_targets(S, False) == (R, H)
    for by_operator in (True, False):
        for cur in Mode:
            assert cur not in allowed_targets(cur, by_operator)


def test_system_only_escalates():
    for cur, tgt in SYSTEM_ALLOWED:
        assert restrictiveness(tgt) > restrictiveness(cur)
    assert SYSTEM_ALLOWED < OPERATOR_ALLOWED


def test_messages():
    with pytest.raises(ModeTransitionError, match="already in HALTED"):
        check_transition(H, H, by_operator=True, reason=REASON)
    with pytest.raises(ModeTransitionError) as exc:
        check_transition(H, N, by_operator=True, reason=REASON)
    assert str(exc.value) == "HALTED -> NORMAL is not allowed; allowed targets from HALTED for an operator: REDUCE_ONLY"
    with pytest.raises(ModeTransitionError) as exc:
        check_transition(R, N, by_operator=False, reason=REASON)
    assert "needs an operator" in str(exc.value) and "REDUCE_ONLY -> NORMAL" in str(exc.value)
    assert "allowed targets from REDUCE_ONLY for the system: HALTED" in str(exc.value)
    with pytest.raises(ModeTransitionError) as exc:
        check_transition(H, R, by_operator=False, reason=REASON)
    assert "needs an operator" in str(exc.value) and "none" in str(exc.value)
    with pytest.raises(ModeTransitionError, match="needs an operator"):
        check_transition(N, S, by_operator=False, reason=REASON)  # same rank: not an escalation
    with pytest.raises(ModeTransitionError, match="unknown target mode 'PAUSED'"):
        check_transition(N, "PAUSED", by_operator=True, reason=REASON)
    with pytest.raises(ModeTransitionError, match="unknown current mode"):
        check_transition("nope", N, by_operator=True, reason=REASON)
    assert isinstance(ModeTransitionError("x"), ValueError)


@pytest.mark.parametrize("reason", ["", "  ", "ab", " a b ", "\t\n", None])
def test_reason_is_required(reason):
    with pytest.raises(ModeTransitionError, match="reason of at least 3 non-space characters") as exc:
        check_transition(N, H, by_operator=True, reason=reason)
    assert "NORMAL -> HALTED" in str(exc.value)


@pytest.mark.parametrize("reason", ["abc", " a b c ", "operator resumed after review"])
def test_reason_accepted(reason):
    assert check_transition("NORMAL", "HALTED", by_operator=True, reason=reason) is H


def test_strings_and_modes_mix():
    assert check_transition("SHADOW", R, by_operator=False, reason=REASON) == "REDUCE_ONLY"
    assert Mode("HALTED") is H and H == "HALTED" and str(H) == "HALTED"


def test_entries_and_orders_by_mode():
    assert [allows_entries(m) for m in (N, S, R, H)] == [True, True, False, False]
    assert [sends_orders(m) for m in (N, S, R, H)] == [True, False, True, False]
    assert allows_entries("SHADOW") and not sends_orders("SHADOW")
