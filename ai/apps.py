from django.apps import AppConfig


class AiConfig(AppConfig):
    """Features, forecasters, ensemble, model registry, RL sizing (ai service, inference queue)."""

    name = "ai"
    verbose_name = "AI"

    def ready(self) -> None:
        from ai import rpc, subscribers  # noqa: F401
