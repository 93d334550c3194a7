from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """Health monitor, alerts, learning manager, orchestration, dashboard (analytics-os service)."""

    name = "analytics"

    def ready(self) -> None:
        from analytics import rpc, subscribers  # noqa: F401
        from analytics.healing import watchdog
        from qtweb.lifecycle import on_worker_ready
        from qtweb.queues import Queue

        # The learning worker watches the ops worker, where self-healing itself runs.
        on_worker_ready(Queue.LEARNING, watchdog.start)
