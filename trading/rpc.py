"""RPC commands of the exec-risk service (answered on the execution queue)."""
from qtweb.queues import Service
from qtweb.rpc import command
from qtweb.rpc.registry import ping_reply


@command(Service.EXEC_RISK, "ping")
def ping() -> dict:
    return ping_reply(Service.EXEC_RISK)
