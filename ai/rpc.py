"""RPC commands of the ai service (answered on the inference queue)."""
from qtweb.queues import Service
from qtweb.rpc import command
from qtweb.rpc.registry import ping_reply


@command(Service.AI, "ping")
def ping() -> dict:
    return ping_reply(Service.AI)


@command(Service.AI, "get_top_opportunities")
def get_top_opportunities(top_n: int = 20) -> list[dict]:
    from ai.universe.services import top_opportunities

    return top_opportunities(top_n)


@command(Service.AI, "get_signal")
def get_signal(symbol: str) -> dict:
    from ai.inference import get_signal as _get_signal

    return _get_signal(symbol)
