"""The rule store: reads for the API and admin, and the design's defaults restored on demand."""
from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from analytics.alerting.catalog import DEFAULT_RULES
from analytics.models import AlertFiring, AlertRule


def alert_rule_list() -> QuerySet[AlertRule]:
    """Every rule, by name."""
    return AlertRule.objects.order_by("name")


def alert_firing_list() -> QuerySet[AlertFiring]:
    """Every firing, newest first."""
    return AlertFiring.objects.select_related("rule").order_by("-fired_at", "-pk")


def default_rules_install(*, reset: bool = False, updated_by: str = "setup_alert_rules") -> dict[str, str]:
    """Install the design's four rules (catalog.DEFAULT_RULES). Without `reset` a rule that exists
    by name is left as the operator edited it; with `reset` it is put back to the default (and
    enabled). Other rules are never touched. Returns {name: "created" | "reset" | "kept"}."""
    out: dict[str, str] = {}
    with transaction.atomic():
        for default in DEFAULT_RULES:
            values = {**default, "enabled": True, "updated_by": updated_by}
            rule = AlertRule.objects.select_for_update().filter(name=default["name"]).first()
            if rule is None:
                rule = AlertRule(**values)
                rule.full_clean()
                rule.save()
                out[default["name"]] = "created"
            elif reset:
                for key, value in values.items():
                    setattr(rule, key, value)
                rule.full_clean()
                rule.save()
                out[default["name"]] = "reset"
            else:
                out[default["name"]] = "kept"
    return out
