from django.apps import AppConfig


class QtwebConfig(AppConfig):
    name = "qtweb"
    verbose_name = "Platform (events, heartbeats)"

    def ready(self) -> None:
        from qtweb.logging import configure_structlog

        configure_structlog()
