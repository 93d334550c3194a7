"""Event consumers of the ai app."""
from __future__ import annotations

from qtweb.events import EventEnvelope, EventType, subscriber
from qtweb.queues import Queue


@subscriber(EventType.POSITION_CLOSED, queue=Queue.LEARNING, name="ai.sizing.record_experience")
def record_rl_experience(event: EventEnvelope) -> None:
    """A closed position becomes RL sizing experience, stored once per position_id."""
    from ai.sizing.services import record_experience

    record_experience(event)
