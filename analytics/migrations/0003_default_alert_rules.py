"""The design's four alert rules as rows (ServiceDown, HighMemory, DrawdownLimit, ModelDrift).

Copied here, not imported from analytics/alerting/catalog.py: a migration is frozen history."""
from django.db import migrations

RULES = (
    {"name": "ServiceDown", "metric": "heartbeat_missing_seconds", "comparison": "gt", "threshold": 15.0,
     "action": "auto_restart", "severity": "critical", "cooldown_seconds": 60,
     "description": "A queue's workers stopped beating: restart the worker."},
    {"name": "HighMemory", "metric": "memory_percent", "comparison": "gt", "threshold": 85.0,
     "action": "notify", "severity": "warning", "cooldown_seconds": 600,
     "description": "A worker uses more than 85 % of the machine's memory (self-healing restarts its pool)."},
    {"name": "DrawdownLimit", "metric": "drawdown_pct", "comparison": "gt", "threshold": 10.0,
     "action": "emergency_stop", "severity": "critical", "cooldown_seconds": 3600,
     "description": "The account lost more than 10 % since the start of the UTC day: emergency stop through risk."},
    {"name": "ModelDrift", "metric": "drift_score", "comparison": "gt", "threshold": 0.15,
     "action": "trigger_retraining", "severity": "warning", "cooldown_seconds": 3600,
     "description": "A champion's drift score is above 0.15: the learning manager retrains it."},
)


def install(apps, schema_editor):
    AlertRule = apps.get_model("analytics", "AlertRule")
    for rule in RULES:
        AlertRule.objects.get_or_create(name=rule["name"], defaults={**rule, "updated_by": "migration"})


def remove(apps, schema_editor):
    apps.get_model("analytics", "AlertRule").objects.filter(
        name__in=[r["name"] for r in RULES], updated_by="migration").delete()


class Migration(migrations.Migration):
    dependencies = [("analytics", "0002_health_healing_alerting")]
    operations = [migrations.RunPython(install, remove)]
