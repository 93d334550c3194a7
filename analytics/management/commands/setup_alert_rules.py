"""manage.py setup_alert_rules [--reset]: install the design's four alert rules (ServiceDown,
HighMemory, DrawdownLimit, ModelDrift); --reset puts edited ones back to their defaults."""
from django.core.management.base import BaseCommand

from analytics.alerting.rules import default_rules_install


class Command(BaseCommand):
    help = ("Install the default alert rules that are missing (an operator's edits are kept); with --reset, "
            "restore all four to their defaults and enable them. Other rules are left alone.")

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="restore the defaults over edited rules")

    def handle(self, *args, reset, **options):
        for name, what in default_rules_install(reset=reset).items():
            self.stdout.write(f"{name}: {what}")
