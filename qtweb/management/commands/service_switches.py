"""Show the service switches, or print them for the shell that starts supervisord.

`make run` evaluates `manage.py service_switches --export` so each worker program of
deploy/supervisord.conf starts (autostart) only when its service is enabled. The values come from
the settings, so the environment is parsed once, by django-environ, the same way every process
of the system parses it.
"""
from django.core.management.base import BaseCommand

from qtweb.queues import SERVICE_QUEUES, Service, service_enabled, service_shadow

# The variable deploy/supervisord.conf reads (%(ENV_...)s) for each service's worker programs.
AUTOSTART_VARS: dict[Service, str] = {
    Service.AI: "QT_AUTOSTART_AI",
    Service.EXEC_RISK: "QT_AUTOSTART_EXEC_RISK",
    Service.ANALYTICS: "QT_AUTOSTART_ANALYTICS",
}


# Whether supervisord restarts the inference, execution and learning workers itself. When
# self-healing acts (the analytics-os service enabled, not in SHADOW, PROCESS_MANAGER=supervisor)
# it is the one that restarts them, with its cooldown and restart-loop guard; supervisord's own
# autorestart would restart a crashing worker forever behind its back. The ops worker, where
# self-healing runs, always keeps supervisord's autorestart.
AUTORESTART_VAR = "QT_WORKER_AUTORESTART"


def healing_restarts_workers() -> bool:
    from django.conf import settings

    return (service_enabled(Service.ANALYTICS) and not service_shadow(Service.ANALYTICS)
            and settings.PROCESS_MANAGER == "supervisor")


class Command(BaseCommand):
    help = "Show which services are enabled and in SHADOW; --export prints shell exports for supervisord."

    def add_arguments(self, parser):
        parser.add_argument("--export", action="store_true",
                            help="print `export QT_AUTOSTART_<SERVICE>=true|false` for deploy/supervisord.conf")

    def handle(self, *args, **options):
        if options["export"]:
            pairs = [f"{var}={'true' if service_enabled(service) else 'false'}"
                     for service, var in AUTOSTART_VARS.items()]
            pairs.append(f"{AUTORESTART_VAR}={'false' if healing_restarts_workers() else 'true'}")
            self.stdout.write(f"export {' '.join(pairs)}")
            return
        for service, queues in SERVICE_QUEUES.items():
            workers = ", ".join(f"worker-{q.value}" for q in queues)
            state = "enabled" if service_enabled(service) else "DISABLED (workers not started, events held)"
            shadow = "  SHADOW (decides and records, does not act)" if service_shadow(service) else ""
            self.stdout.write(f"{service.value:<22} {state}{shadow}  [{workers}]")
