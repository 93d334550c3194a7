"""Event consumers of the ai app."""
from __future__ import annotations

from core.enums import Mode
from qtweb.events import EventEnvelope, EventType, subscriber
from qtweb.queues import Queue


@subscriber(EventType.POSITION_CLOSED, queue=Queue.LEARNING, name="ai.sizing.record_experience")
def record_rl_experience(event: EventEnvelope) -> None:
    """A closed position becomes RL sizing experience, stored once per position_id."""
    from ai.sizing.services import record_experience

    record_experience(event)


@subscriber(EventType.POSITION_OPENED, queue=Queue.LEARNING, name="ai.meta.link_position")
def meta_link_position(event: EventEnvelope) -> None:
    """The meta-strategy decision behind a new position remembers it, so its reward finds it."""
    from ai.meta.services import link_position

    link_position(event)


@subscriber(EventType.POSITION_CLOSED, queue=Queue.LEARNING, name="ai.meta.learn")
def meta_learn(event: EventEnvelope) -> None:
    """A closed position rewards the meta-strategy profile that opened it (once per decision)."""
    from ai.meta.services import learn_from_closed

    learn_from_closed(event)


@subscriber(EventType.SIGNAL_GENERATED, queue=Queue.INFERENCE, name="ai.sizing.size_signal")
def size_trade_signal(event: EventEnvelope) -> None:
    """Flow 1: a BUY or SELL signal is sized (PPO capped by fractional Kelly and the policy) and
    becomes one `rl.decision` under the signal's trace id. HOLD needs no size."""
    if event.data().action.side is None:
        return
    from ai.inference import current_mode
    from ai.sizing.services import size_signal

    if current_mode() in (Mode.HALTED, Mode.REDUCE_ONLY):
        return  # nothing new may open: no size to give

    size_signal(event)


@subscriber(EventType.SYSTEM_MODE_CHANGED, queue=Queue.INFERENCE, name="ai.inference.mode_changed")
def on_mode_changed(event: EventEnvelope) -> None:
    """Remember the system mode for inference and sizing (see ai/inference.py)."""
    from ai.inference import set_mode

    set_mode(event.data().mode)


@subscriber(EventType.POLICY_UPDATED, queue=Queue.INFERENCE, name="ai.inference.policy_updated")
def on_policy_updated(event: EventEnvelope) -> None:
    """A new policy version: this process re-reads its serving set on the next pass."""
    from ai.inference import engine

    engine().invalidate()
