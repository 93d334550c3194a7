from django.db import models


class WorkerHeartbeat(models.Model):
    """The latest heartbeat of each worker (one row per worker name, updated every beat).

    Written in the same transaction as the `service.heartbeat` event it reports, so health
    does not depend on any consumer being alive.
    """

    worker = models.CharField(max_length=128, unique=True)  # celery node name, e.g. ops@host
    service = models.CharField(max_length=64, db_index=True)
    queue = models.CharField(max_length=32)
    host = models.CharField(max_length=128)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    stats = models.JSONField(default=dict)

    class Meta:
        ordering = ["service", "queue", "worker"]

    def __str__(self) -> str:
        return f"{self.worker} ({self.service})"
