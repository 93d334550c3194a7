"""The event store: an append-only outbox of events and one delivery row per subscriber.

`Event` rows are written in the same transaction as the state change they report and never
updated. `EventDelivery` is both the outbox state (is this subscriber's copy still owed?) and
the processed marker that makes consumers idempotent: a handler runs only in the transaction
that flips its delivery from PENDING to DONE.
"""
from __future__ import annotations

from django.db import models


class AppendOnlyError(RuntimeError):
    """An attempt to modify a stored event. Events are facts: publish a new one instead."""


class Event(models.Model):
    event_id = models.UUIDField(primary_key=True)
    type = models.CharField(max_length=64, db_index=True)
    version = models.PositiveSmallIntegerField()
    trace_id = models.CharField(max_length=64)
    source = models.CharField(max_length=64)
    timestamp = models.DateTimeField()
    payload = models.JSONField()

    class Meta:
        ordering = ["timestamp"]
        indexes = [
            models.Index(fields=["trace_id", "timestamp"], name="event_trace_ts"),
            models.Index(fields=["timestamp"], name="event_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} trace={self.trace_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"event {self.event_id} is append-only and cannot be changed")
        super().save(*args, **kwargs)

    def as_envelope(self) -> dict:
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "version": self.version,
            "trace_id": self.trace_id,
            "source": self.source,
            "timestamp": self.timestamp.isoformat(),
            "payload": self.payload,
        }


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "pending"  # owed to the subscriber (dispatched or not yet)
    DONE = "DONE", "done"  # handled once; duplicates are skipped
    FAILED = "FAILED", "failed"  # handler raised on every try; an operator decides


class EventDelivery(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.CharField(max_length=128)
    queue = models.CharField(max_length=32)
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    dispatch_count = models.PositiveIntegerField(default=1)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    dispatched_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    processed_by = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        verbose_name_plural = "event deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "subscriber"], name="delivery_once_per_subscriber")
        ]
        indexes = [
            models.Index(fields=["status", "queue", "dispatched_at"], name="delivery_pending"),
            models.Index(fields=["processed_by", "processed_at"], name="delivery_by_worker"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber} <- {self.event_id} [{self.status}]"
