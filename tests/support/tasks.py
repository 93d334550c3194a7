from datetime import UTC, datetime

from qtweb import tracing
from qtweb.events import EventType, publish
from qtweb.queues import Queue
from qtweb.taskqueue import queue_task


@queue_task(Queue.OPS, name="tests.publish_probe")
def publish_probe(probe_id: str, note: str = "") -> dict:
    """Publish a probe from inside a task (so its trace id must come from the task header)."""
    env = publish(EventType.PLATFORM_PROBE, {"probe_id": probe_id, "sent_at": datetime.now(UTC), "note": note})
    return {"event_id": str(env.event_id), "trace_id": env.trace_id, "task_trace_id": tracing.current_trace_id()}
