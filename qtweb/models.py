"""Platform models (the app registry finds them here)."""
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from qtweb.health.models import WorkerHeartbeat

__all__ = ["DeliveryStatus", "Event", "EventDelivery", "WorkerHeartbeat"]
