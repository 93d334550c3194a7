from datetime import UTC, datetime

from celery import shared_task

from qtweb import tracing
from qtweb.events import EventType, publish


@shared_task(name="tests.publish_probe")  # callers send it with queue="ops"
def publish_probe(probe_id: str, note: str = "") -> dict:
    """Publish a probe from inside a task (so its trace id must come from the task header)."""
    env = publish(EventType.PLATFORM_PROBE, {"probe_id": probe_id, "sent_at": datetime.now(UTC), "note": note})
    return {"event_id": str(env.event_id), "trace_id": env.trace_id, "task_trace_id": tracing.current_trace_id()}
