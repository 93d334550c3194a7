"""System modes and the rules for moving between them.

NORMAL trades; SHADOW runs everything but sends no orders; REDUCE_ONLY only lets orders that shrink
positions through; HALTED lets nothing through (an emergency flatten is the governor's own path).
The system may only escalate (towards HALTED); every de-escalation needs an operator.
"""
from __future__ import annotations

from core.enums import Mode

__all__ = ["Mode", "ModeTransitionError", "allowed_targets", "allows_entries", "check_transition",
           "restrictiveness", "sends_orders"]

MIN_REASON_CHARS = 3


class ModeTransitionError(ValueError):
    """A mode change the rules forbid; the message names current, target and allowed targets."""


_GRAPH: dict[Mode, tuple[Mode, ...]] = {
    Mode.NORMAL: (Mode.SHADOW, Mode.REDUCE_ONLY, Mode.HALTED),
    Mode.SHADOW: (Mode.NORMAL, Mode.REDUCE_ONLY, Mode.HALTED),
    Mode.REDUCE_ONLY: (Mode.NORMAL, Mode.SHADOW, Mode.HALTED),
    Mode.HALTED: (Mode.REDUCE_ONLY,),
}
_RANK: dict[Mode, int] = {Mode.NORMAL: 0, Mode.SHADOW: 0, Mode.REDUCE_ONLY: 1, Mode.HALTED: 2}


def _mode(value: Mode | str, what: str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        raise ModeTransitionError(f"unknown {what} mode {value!r}; modes: {', '.join(Mode)}") from None


def restrictiveness(mode: Mode | str) -> int:
    """0 for NORMAL and SHADOW, 1 for REDUCE_ONLY, 2 for HALTED."""
    return _RANK[Mode(mode)]


def allowed_targets(current: Mode | str, by_operator: bool) -> tuple[Mode, ...]:
    """The modes reachable from `current` in one step: an operator may take any edge of the graph,
    the system only the edges to a more restrictive mode."""
    cur = _mode(current, "current")
    targets = _GRAPH[cur]
    if by_operator:
        return targets
    return tuple(t for t in targets if _RANK[t] > _RANK[cur])


def _names(modes: tuple[Mode, ...]) -> str:
    return ", ".join(m.value for m in modes) if modes else "none"


def check_transition(current: Mode | str, target: Mode | str, *, by_operator: bool, reason: str) -> Mode:
    """The target Mode when current -> target is allowed, else ModeTransitionError saying why."""
    cur = _mode(current, "current")
    tgt = _mode(target, "target")
    who = "an operator" if by_operator else "the system"
    if not isinstance(reason, str) or len("".join(reason.split())) < MIN_REASON_CHARS:
        raise ModeTransitionError(
            f"a reason of at least {MIN_REASON_CHARS} non-space characters is required to change mode "
            f"{cur.value} -> {tgt.value}")
    if cur == tgt:
        raise ModeTransitionError(
            f"already in {cur.value}; allowed targets from {cur.value} for {who}: "
            f"{_names(allowed_targets(cur, by_operator))}")
    if tgt not in _GRAPH[cur]:
        raise ModeTransitionError(
            f"{cur.value} -> {tgt.value} is not allowed; allowed targets from {cur.value} for {who}: "
            f"{_names(allowed_targets(cur, by_operator))}")
    if not by_operator and _RANK[tgt] <= _RANK[cur]:
        raise ModeTransitionError(
            f"{cur.value} -> {tgt.value} needs an operator (the system may only escalate); "
            f"allowed targets from {cur.value} for the system: {_names(allowed_targets(cur, False))}")
    return tgt


def allows_entries(mode: Mode | str) -> bool:
    """Whether orders that open or grow positions may pass (NORMAL, SHADOW)."""
    return Mode(mode) in (Mode.NORMAL, Mode.SHADOW)


def sends_orders(mode: Mode | str) -> bool:
    """Whether approved orders go to the exchange: NORMAL and REDUCE_ONLY. SHADOW simulates them;
    HALTED approves none (the governor's emergency flatten bypasses the validator)."""
    return Mode(mode) in (Mode.NORMAL, Mode.REDUCE_ONLY)
