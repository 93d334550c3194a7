"""RPC commands of the ai service (answered on the inference queue)."""
from qtweb.queues import Service
from qtweb.rpc import command
from qtweb.rpc.registry import ping_reply


@command(Service.AI, "ping")
def ping() -> dict:
    return ping_reply(Service.AI)
