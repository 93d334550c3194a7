"""Install qtweb/schedules.py into django-celery-beat. Idempotent: run it at every deploy.

The service switches decide each row's queue and whether it is enabled (qtweb.schedules.placement).
A row this command disabled for a switch says so at the end of its description, and is enabled
again once the switch is back on; a row an operator disabled in the admin stays disabled.
"""
import json

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from qtweb.schedules import MANAGED_PREFIX, RENAMED_TASKS, SCHEDULES, placement

# Appended to the description of a row disabled because its service is switched off.
SWITCHED_OFF_NOTE = " [switched off: {reason}]"
SWITCHED_OFF_MARK = " [switched off: "


def _follow_renamed_tasks() -> int:
    """Point every beat row stored under a task's old name at its new name. A managed row also
    takes the key its task is now scheduled under (unless that row exists already), so the
    operator's enabled/disabled choice and its last run survive the rename; a managed row that
    cannot take the key is removed below with the other stale ones."""
    key_for_task = {sched.task: name for name, sched in SCHEDULES.items()}
    renamed = 0
    for row in PeriodicTask.objects.filter(task__in=list(RENAMED_TASKS)):
        row.task = RENAMED_TASKS[row.task]
        key = key_for_task.get(row.task)
        if row.name.startswith(MANAGED_PREFIX) and key and not PeriodicTask.objects.filter(name=key).exists():
            row.name = key
        row.save()
        renamed += 1
    return renamed


class Command(BaseCommand):
    help = "Create, update, rename and remove the system's periodic tasks (django-celery-beat) from qtweb/schedules.py."

    @transaction.atomic
    def handle(self, *args, **options):
        renamed = _follow_renamed_tasks()
        created = updated = 0
        switched_off = []
        for name, sched in SCHEDULES.items():
            queue, off_reason = placement(sched)
            if off_reason:
                switched_off.append(name)
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
                "queue": queue.value,
                "expire_seconds": int(sched.expires_seconds),
                "enabled": not off_reason,
                "description": sched.description + (SWITCHED_OFF_NOTE.format(reason=off_reason) if off_reason else ""),
                "args": json.dumps([]),
                "kwargs": json.dumps({}),
            }
            obj, was_created = PeriodicTask.objects.get_or_create(name=name, defaults=defaults)
            if was_created:
                created += 1
                continue
            changed = [k for k, v in defaults.items() if getattr(obj, k) != v and k != "enabled"]
            # The switch wins over the row's state; otherwise the operator's choice is kept.
            switched_back_on = not off_reason and not obj.enabled and SWITCHED_OFF_MARK in obj.description
            if (off_reason and obj.enabled) or switched_back_on:
                changed.append("enabled")
            if changed:
                for k in changed:
                    setattr(obj, k, defaults[k])
                obj.save()
                updated += 1
        stale = PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX).exclude(name__in=list(SCHEDULES))
        removed = stale.count()
        stale.delete()
        self.stdout.write(f"periodic tasks: {created} created, {updated} updated, {removed} removed, "
                          f"{renamed} renamed, {len(SCHEDULES)} managed, {len(switched_off)} switched off")
        if switched_off:
            self.stdout.write(f"switched off (service disabled): {', '.join(sorted(switched_off))}")
