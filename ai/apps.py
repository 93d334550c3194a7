from django.apps import AppConfig


class AiConfig(AppConfig):
    """Features, forecasters, ensemble, model registry, RL sizing (ai service, inference queue)."""

    name = "ai"
    verbose_name = "AI"

    def ready(self) -> None:
        from ai import rpc, subscribers  # noqa: F401
        from qtweb.lifecycle import on_process_reset

        on_process_reset(_forget_sizing_memos)


def _forget_sizing_memos() -> None:
    # Imported when called: the sizing services load gymnasium, which a process that never
    # sizes a signal should not pay for at start.
    from ai.sizing.services import forget_memos

    forget_memos()
