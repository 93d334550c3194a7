from django.apps import AppConfig


class TradingConfig(AppConfig):
    """Market data, exchange gateway, orders, fills, positions (exec-risk service, execution queue)."""

    name = "trading"

    def ready(self) -> None:
        from qtweb.lifecycle import on_process_reset, on_worker_ready
        from qtweb.queues import Queue
        from trading import rpc, subscribers  # noqa: F401

        on_worker_ready(Queue.EXECUTION, _reconcile_at_worker_start)
        on_process_reset(_forget_exchange_state)


def _reconcile_at_worker_start() -> None:
    """The execution worker reconciles with the exchange before it places any order (each pool
    process also checks before its own first order: trading/execution/orders.py)."""
    from trading.tasks import reconcile_exchange

    reconcile_exchange.apply_async(kwargs={"reason": "worker_start"}, priority=0)


# The resets import their module when called, not in ready(): the web process and every
# management command would otherwise load the execution stack at start.
def _forget_exchange_state() -> None:
    from trading.execution.orders import forget_exchange_state

    forget_exchange_state()
