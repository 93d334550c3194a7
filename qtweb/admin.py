"""Admin for the platform: events (read-only, searchable by trace id), deliveries, heartbeats."""
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from qtweb.events.bus import retry_failed
from qtweb.events.models import DeliveryStatus, Event, EventDelivery
from qtweb.health.models import WorkerHeartbeat


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryInline(admin.TabularInline):
    model = EventDelivery
    extra = 0
    can_delete = False
    fields = ["subscriber", "queue", "status", "attempts", "dispatch_count", "processed_at", "processed_by",
              "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """Events are append-only. Search a trace id to see its whole flow in order."""

    list_display = ["timestamp", "type", "source", "trace_link", "event_id"]
    list_filter = ["type", "source"]
    search_fields = ["=trace_id", "=event_id"]
    ordering = ["-timestamp"]
    date_hierarchy = "timestamp"
    inlines = [DeliveryInline]
    readonly_fields = ["event_id", "type", "version", "trace_id", "source", "timestamp", "payload"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="trace id", ordering="trace_id")
    def trace_link(self, obj):
        url = reverse("admin:qtweb_event_changelist") + f"?trace_id={obj.trace_id}&o=1"
        return format_html('<a href="{}">{}</a>', url, obj.trace_id)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        trace_id = request.GET.get("trace_id")
        return qs.filter(trace_id=trace_id).order_by("timestamp") if trace_id else qs

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "trace_id" or super().lookup_allowed(lookup, value, request)


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event", "subscriber", "queue", "status", "attempts", "dispatch_count", "processed_at",
                    "short_error"]
    list_filter = ["status", "queue", "subscriber"]
    search_fields = ["=event__trace_id", "=event__event_id"]
    actions = ["retry_selected"]
    list_select_related = ["event"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:120]

    @admin.action(description="Retry selected FAILED deliveries")
    def retry_selected(self, request, queryset):
        n = retry_failed(queryset.filter(status=DeliveryStatus.FAILED).values_list("pk", flat=True))
        self.message_user(request, f"{n} failed deliveries re-queued", messages.SUCCESS)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["worker", "service", "queue", "host", "pid", "last_seen", "stopped_at", "started_at"]
    list_filter = ["service", "queue"]
