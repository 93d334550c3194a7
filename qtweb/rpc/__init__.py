"""RPC between services over Celery: `qtweb.rpc.call("ai", "ping")`."""
from qtweb.rpc.errors import (
    RpcBadParams,
    RpcError,
    RpcMisuse,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    RpcUnknownCommand,
)
from qtweb.rpc.registry import command


def call(*args, **kwargs):
    from qtweb.rpc.client import call as _call

    return _call(*args, **kwargs)


__all__ = ["RpcBadParams", "RpcError", "RpcMisuse", "RpcRemoteError", "RpcTimeout", "RpcUnavailable",
           "RpcUnknownCommand", "call", "command"]
