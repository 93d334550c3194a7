"""Install qtweb/schedules.py into django-celery-beat. Idempotent: run it at every deploy."""
import json

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from qtweb.schedules import MANAGED_PREFIX, SCHEDULES


class Command(BaseCommand):
    help = "Create, update and remove the system's periodic tasks (django-celery-beat) from qtweb/schedules.py."

    @transaction.atomic
    def handle(self, *args, **options):
        created = updated = 0
        for name, sched in SCHEDULES.items():
            micro = int(round(sched.every_seconds * 1_000_000))
            if micro % 1_000_000 == 0:
                interval, _ = IntervalSchedule.objects.get_or_create(every=micro // 1_000_000,
                                                                     period=IntervalSchedule.SECONDS)
            else:
                interval, _ = IntervalSchedule.objects.get_or_create(every=micro, period=IntervalSchedule.MICROSECONDS)
            defaults = {
                "task": sched.task,
                "interval": interval,
                "crontab": None,
                "queue": sched.queue.value,
                "expire_seconds": int(sched.expires_seconds),
                "enabled": True,
                "description": sched.description,
                "args": json.dumps([]),
                "kwargs": json.dumps({}),
            }
            obj, was_created = PeriodicTask.objects.get_or_create(name=name, defaults=defaults)
            if was_created:
                created += 1
                continue
            changed = [k for k, v in defaults.items() if getattr(obj, k) != v and k != "enabled"]
            if changed:
                for k in changed:
                    setattr(obj, k, defaults[k])
                obj.save()
                updated += 1
        stale = PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX).exclude(name__in=list(SCHEDULES))
        removed = stale.count()
        stale.delete()
        self.stdout.write(f"periodic tasks: {created} created, {updated} updated, {removed} removed, "
                          f"{len(SCHEDULES)} managed")
