from django.apps import AppConfig


class TradingConfig(AppConfig):
    """Market data, exchange gateway, orders, fills, positions (exec-risk service, execution queue)."""

    name = "trading"

    def ready(self) -> None:
        from trading import rpc, subscribers  # noqa: F401
