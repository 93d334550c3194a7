"""Operator channels in the admin. The URL is typed once into a write-only field (checked by
Apprise, stored encrypted) and never shown again: the page says only where it comes from and
its scheme. Deliveries are read-only; FAILED ones can be retried."""
from django import forms
from django.contrib import admin, messages

from analytics.models import DeliveryStatus, NotificationChannel, NotificationDelivery
from analytics.notifications import channels, dispatch
from core.enums import Severity
from qtweb.admin import ReadOnlyAdmin

_SEVERITIES = [(s.value, s.value) for s in Severity]


class NotificationChannelForm(forms.ModelForm):
    url = forms.CharField(
        required=False, max_length=2000, strip=True,
        # render_value=False: the stored URL (or what was typed, after an error) never goes back
        # to the browser.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text="An Apprise URL (json://host/path, tgram://bottoken/chatid, discord://id/token, "
                  "mailto://user:pass@host, ...). Stored encrypted, never shown again; leave empty to keep the "
                  "current one. Or name an environment variable in 'url env' instead.")
    min_severity = forms.ChoiceField(choices=_SEVERITIES, help_text="info < warning < critical")

    class Meta:
        model = NotificationChannel
        fields = ["name", "url", "url_env", "min_severity", "enabled", "max_per_minute"]
        help_texts = {"max_per_minute": "Messages per minute at most; alerts beyond wait and go out batched "
                                        "into one message. 0: no limit."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.initial.setdefault("min_severity", channels.default_min_severity().value)

    def clean_url(self):
        url = self.cleaned_data.get("url") or ""
        if not url:
            return ""
        try:
            return channels.validate_url(url)
        except channels.ChannelConfigError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_url_env(self):
        name = (self.cleaned_data.get("url_env") or "").strip()
        if not name:
            return ""
        try:
            return channels.validate_env_name(name)
        except channels.ChannelConfigError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        url, url_env = data.get("url"), data.get("url_env")
        if url and url_env:
            self.add_error("url", "url: give either url (stored encrypted) or url env (an environment variable), "
                                  "not both")
        elif not url and not url_env and not self.instance.url_encrypted and "url" not in self.errors:
            self.add_error("url", "url: required (or name an environment variable in url env)")
        return data

    def save(self, commit=True):
        channel = super().save(commit=False)
        url, url_env = self.cleaned_data.get("url"), self.cleaned_data.get("url_env")
        if url:
            channels.apply_url(channel, url=url)
        elif url_env:
            channels.apply_url(channel, url_env=url_env)
        if commit:
            channel.save()
        return channel


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ["name", "url_from", "min_severity", "enabled", "max_per_minute", "state", "last_success_at",
                    "last_error_at", "short_error"]
    list_filter = ["enabled", "min_severity"]
    search_fields = ["name", "url_env"]
    readonly_fields = ["url_from", "state", "last_success_at", "last_error", "last_error_at"]
    actions = ["send_test"]

    def get_fields(self, request, obj=None):
        fields = ["name", "url_from", "url", "url_env", "min_severity", "enabled", "max_per_minute"]
        return fields + ["state", "last_success_at", "last_error", "last_error_at"] if obj else fields

    def save_model(self, request, obj, form, change):
        # The workers write the channel's outcome fields (last_success_at, last_error) at any time:
        # saving the form writes only what the form edits.
        if change:
            obj.save(update_fields=channels.EDITABLE_FIELDS)
        else:
            obj.save()

    @admin.display(description="URL")
    def url_from(self, obj):
        return channels.url_source(obj) if obj and obj.pk else "-"

    @admin.display(description="state")
    def state(self, obj):
        return channels.channel_state(obj)

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:120]

    @admin.action(description="Send a test message to the selected channels")
    def send_test(self, request, queryset):
        names = []
        for channel in queryset:
            dispatch.send_test(channel, requested_by=request.user.get_username())
            names.append(channel.name)
        self.message_user(request, f"test message queued for {', '.join(names)}; see notification deliveries",
                          messages.SUCCESS)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    """One alert to one channel, written before it was sent. Read-only; FAILED ones can be sent again."""

    list_display = ["created_at", "channel", "severity", "title", "status", "attempts", "next_attempt_at", "sent_at",
                    "short_error", "trace_id"]
    list_filter = ["status", "severity", "channel"]
    search_fields = ["=trace_id", "=event_id", "title"]
    readonly_fields = [f.name for f in NotificationDelivery._meta.fields]
    list_select_related = ["channel"]
    actions = ["retry_selected"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:120]

    @admin.action(description="Send the selected FAILED deliveries again")
    def retry_selected(self, request, queryset):
        n = dispatch.retry_failed(queryset.filter(status=DeliveryStatus.FAILED).values_list("pk", flat=True))
        self.message_user(request, f"{n} failed deliveries queued again", messages.SUCCESS)
