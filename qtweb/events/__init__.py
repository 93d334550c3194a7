"""The event backbone. Import what you need from here:

    from qtweb.events import publish, EventType, subscriber
"""
from qtweb.events.registry import ALL_EVENTS, subscriber
from qtweb.events.schemas import EventEnvelope, EventType, EventValidationError


def publish(*args, **kwargs):
    from qtweb.events.bus import publish as _publish

    return _publish(*args, **kwargs)


__all__ = ["ALL_EVENTS", "EventEnvelope", "EventType", "EventValidationError", "publish", "subscriber"]
