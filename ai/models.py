from django.db import models


class UniverseSnapshot(models.Model):
    """One run of the universe scanner: the ranking, what was filtered out and why."""

    created_at = models.DateTimeField(db_index=True)
    exchange = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=3)
    params = models.JSONField()
    ranked = models.JSONField(help_text="ranked symbols with their measures, best first")
    excluded = models.JSONField(help_text="symbols a filter dropped, with the reason")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        top = ", ".join(r["symbol"] for r in self.ranked[:3])
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.exchange}: {top}"
