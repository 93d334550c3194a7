from django.apps import AppConfig


class SupportConfig(AppConfig):
    """Test-only subscribers and tasks, installed by qtweb.settings.test in every test process
    (pytest and the real workers it starts) so both sides share one subscription table."""

    name = "tests.support"
    label = "test_support"

    def ready(self) -> None:
        from tests.support import subscribers  # noqa: F401
