from django.apps import AppConfig


class RiskConfig(AppConfig):
    """Policy store, system modes, risk rules, safety governor (exec-risk service)."""

    name = "risk"

    def ready(self) -> None:
        from qtweb.lifecycle import on_process_reset

        on_process_reset(_forget_policy_memo)
        on_process_reset(_forget_day_start)


# The resets import their module when called, not in ready(), so that starting a process does
# not load the risk services it may never use.
def _forget_policy_memo() -> None:
    from risk.services.policy import forget_memo

    forget_memo()


def _forget_day_start() -> None:
    from risk.services.validation import forget_day_start

    forget_day_start()
