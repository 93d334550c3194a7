from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """Health monitor, alerts, learning manager, orchestration, dashboard (analytics-os service)."""

    name = "analytics"

    def ready(self) -> None:
        from analytics import rpc, subscribers  # noqa: F401
