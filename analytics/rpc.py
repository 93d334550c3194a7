"""RPC commands of the analytics-os service (answered on the ops queue)."""
from qtweb.queues import Service
from qtweb.rpc import command
from qtweb.rpc.registry import ping_reply


@command(Service.ANALYTICS, "ping")
def ping() -> dict:
    return ping_reply(Service.ANALYTICS)
