"""RPC commands of the exec-risk service (answered on the execution queue)."""
from core.enums import Side
from qtweb.queues import Service
from qtweb.rpc import command
from qtweb.rpc.registry import ping_reply


@command(Service.EXEC_RISK, "ping")
def ping() -> dict:
    return ping_reply(Service.EXEC_RISK)


@command(Service.EXEC_RISK, "validate_risk")
def validate_risk(symbol: str, size_usd, leverage: int = 1, side: str = Side.BUY) -> dict:
    """What the risk validator would say about an entry now: approved, reason, max_allowed_size
    (a what-if: recorded nowhere, no alert)."""
    from risk.services.queries import validate_risk as query

    return query(symbol=symbol, size_usd=size_usd, leverage=leverage, side=side)


@command(Service.EXEC_RISK, "get_position_status")
def get_position_status(symbol: str) -> dict:
    from trading.positions.queries import position_status

    return position_status(symbol)


@command(Service.EXEC_RISK, "reload_gateway")
def reload_gateway() -> dict:
    """Reconnect to the exchange (after changing keys or the account); the next order waits for
    a fresh reconciliation. The account snapshot that sizing reads is rewritten from the new
    connection at once, so sizing neither waits for the next reconciliation nor sizes on the
    old account."""
    from trading.exchanges.account import exchange_id, reload
    from trading.execution.snapshot import account_snapshot_refresh

    reload()
    snapshot = account_snapshot_refresh(reason="reload")
    return {"exchange": exchange_id(), "reloaded": True, "snapshot": snapshot is not None}
