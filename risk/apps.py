from django.apps import AppConfig


class RiskConfig(AppConfig):
    """Policy store, system modes, risk rules, safety governor (exec-risk service)."""

    name = "risk"
