"""RPC errors. Each names the service and command it concerns."""


class RpcError(Exception):
    """Base class. `recoverable` says whether trying again later may succeed."""

    recoverable = False

    def __init__(self, service: str, command: str, message: str):
        self.service, self.command, self.message = service, command, message
        super().__init__(f"rpc {service}.{command}: {message}")

    def __reduce__(self):  # picklable (Celery result backends, multiprocessing) with its fields
        return (type(self), (self.service, self.command, self.message))


class RpcTimeout(RpcError):
    """No answer within the timeout after every retry (no worker, or a worker too busy)."""

    recoverable = True


class RpcUnavailable(RpcError):
    """The broker could not be reached to send the request."""

    recoverable = True


class RpcUnknownCommand(RpcError):
    """The service has no such command (or the service does not exist)."""


class RpcBadParams(RpcError):
    """The command refused its parameters (not JSON, or wrong names/values)."""


class RpcRemoteError(RpcError):
    """The command ran and raised; `remote_type` is the remote exception's class name."""

    def __init__(self, service: str, command: str, remote_type: str, message: str):
        self.remote_type = remote_type
        super().__init__(service, command, f"{remote_type}: {message}")
        self.remote_message = message

    def __reduce__(self):
        return (type(self), (self.service, self.command, self.remote_type, self.remote_message))


class RpcMisuse(RpcError):
    """rpc.call() from inside a Celery task: a worker waiting on workers can deadlock its own queue."""
