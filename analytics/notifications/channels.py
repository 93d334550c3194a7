"""Operator channels: where their Apprise URL comes from, how it is checked, and the severity
filter.

A channel gets its URL one of two ways, never both:

- from the environment: `NOTIFY_CHANNELS="ops=NOTIFY_URL_OPS:warning,oncall=NOTIFY_URL_PAGER:critical"`
  declares channels whose URL is read from the named variables (`url_env`). The rows are
  created or updated from the setting on the ops worker (every sweep and every alert), so the
  setting decides their URL variable and minimum severity; whether they are enabled and their
  rate limit stay the operator's (admin, API);
- typed once in the admin or the API: checked by Apprise, then stored encrypted
  (`url_encrypted`, see secrets.py) and never shown again.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from django.db.models import QuerySet

from analytics.models import DeliveryStatus, NotificationChannel, NotificationDelivery
from analytics.notifications import secrets
from core.enums import Severity
from qtweb.logging import get_logger

log = get_logger("analytics.notifications")

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
# What an operator edits (admin, API); the rest of a channel is its outcome, written by the workers.
EDITABLE_FIELDS = ["name", "url_env", "url_encrypted", "min_severity", "enabled", "max_per_minute"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ChannelConfigError(ValueError):
    """A channel's definition is wrong (bad URL, variable, severity). Needs an operator; the
    message names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


# --- the severity filter -------------------------------------------------------------------

def parse_severity(value: object, *, field: str = "min_severity") -> Severity:
    try:
        return Severity(str(value).strip().lower())
    except ValueError:
        raise ChannelConfigError(field, f"{value!r} is not a severity (info, warning or critical)") from None


def severity_rank(value: str) -> int:
    """A stored severity's rank; one not in the vocabulary counts as warning (the model's default)."""
    try:
        return SEVERITY_RANK[Severity(value)]
    except ValueError:
        return SEVERITY_RANK[Severity.WARNING]


def accepts(channel: NotificationChannel, severity: str) -> bool:
    """True when `severity` reaches the channel's minimum (info < warning < critical)."""
    return severity_rank(severity) >= severity_rank(channel.min_severity)


def default_min_severity() -> Severity:
    from django.conf import settings

    try:
        return parse_severity(settings.NOTIFY_MIN_SEVERITY, field="NOTIFY_MIN_SEVERITY")
    except ChannelConfigError as exc:
        log.error("invalid setting, using warning", error=str(exc))
        return Severity.WARNING


# --- URLs ------------------------------------------------------------------------------------

def validate_url(url: str) -> str:
    """The URL, stripped, if Apprise can send to it; ChannelConfigError naming `url` otherwise.
    The message shows the scheme at most, never the URL."""
    import apprise

    url = (url or "").strip()
    if not url:
        raise ChannelConfigError("url", "empty")
    scheme = secrets.url_scheme(url)
    if not scheme:
        raise ChannelConfigError("url", "not an Apprise URL (expected scheme://..., e.g. json://host/path, tgram://...)")
    secrets.register_url(url)  # Apprise logs an unparseable URL in full at ERROR
    if not apprise.Apprise().add(url):
        raise ChannelConfigError("url", f"not an Apprise URL Apprise can send to (scheme '{scheme}')")
    return url


# A channel may only read variables meant for it: pointing one at SECRET_KEY or DATABASE_URL would
# send that secret to whatever the "URL" resolves to, and show its first characters in the admin.
ENV_PREFIX = "NOTIFY_URL_"


def validate_env_name(name: str) -> str:
    name = (name or "").strip()
    if not _ENV_NAME.match(name):
        raise ChannelConfigError("url_env", f"{name!r} is not an environment variable name (letters, digits, _)")
    if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
        raise ChannelConfigError("url_env", f"{name!r}: a channel's variable must be named {ENV_PREFIX}<something> "
                                            f"(e.g. {ENV_PREFIX}TELEGRAM), so no other secret can be sent out")
    return name


def apply_url(channel: NotificationChannel, *, url: str | None = None, url_env: str | None = None) -> None:
    """Point `channel` (not saved here) at a typed URL, stored encrypted, or at an environment
    variable. Exactly one source is kept: setting one clears the other."""
    if url and url_env:
        raise ChannelConfigError("url", "give either url (stored encrypted) or url_env (an environment variable), "
                                        "not both")
    if url:
        channel.url_encrypted = secrets.encrypt_url(validate_url(url))
        channel.url_env = ""
    elif url_env:
        channel.url_env = validate_env_name(url_env)
        channel.url_encrypted = ""


def resolve_url(channel: NotificationChannel) -> str:
    """The channel's URL in clear, for sending only. ChannelConfigError naming the field when
    there is none or it cannot be read."""
    if channel.url_env:
        url = os.environ.get(channel.url_env, "").strip()
        if not url:
            raise ChannelConfigError("url_env", f"${channel.url_env} is not set in this process's environment")
    elif channel.url_encrypted:
        try:
            url = secrets.decrypt_url(channel.url_encrypted)
        except (secrets.SecretUnreadable, secrets.EncryptionKeyInvalid) as exc:
            field, _, message = str(exc).partition(": ")
            raise ChannelConfigError(field, message) from None
    else:
        raise ChannelConfigError("url", "no URL: type one in the admin, or set url_env")
    secrets.register_url(url)
    return url


def url_source(channel: NotificationChannel) -> str:
    """What the admin and the API show instead of the URL: where it comes from and its scheme."""
    if channel.url_env:
        value = os.environ.get(channel.url_env, "").strip()
        scheme = secrets.url_scheme(value)
        if not value:
            return f"from ${channel.url_env} (not set in this process)"
        return f"from ${channel.url_env} ({scheme}://…)" if scheme else f"from ${channel.url_env}"
    if channel.url_encrypted:
        try:
            scheme = secrets.url_scheme(secrets.decrypt_url(channel.url_encrypted))
        except (secrets.SecretUnreadable, secrets.EncryptionKeyInvalid):
            return "set, but unreadable with the current keys: type it again"
        return f"set ({scheme}://…)" if scheme else "set"
    return "not set"


def is_failing(channel: NotificationChannel) -> bool:
    """Its last attempt failed (a failure episode lasts until the next success)."""
    return channel.last_error_at is not None and (
        channel.last_success_at is None or channel.last_success_at < channel.last_error_at)


def channel_state(channel: NotificationChannel) -> str:
    if not channel.enabled:
        return "disabled"
    if is_failing(channel):
        return "failing"
    return "ok" if channel.last_success_at else "unused"


# --- channels from the environment -------------------------------------------------------------

@dataclass(frozen=True)
class EnvChannel:
    name: str
    url_env: str
    min_severity: Severity


def parse_env_channels(spec: str, *,
                       default_severity: Severity = Severity.WARNING) -> tuple[list[EnvChannel], list[str]]:
    """NOTIFY_CHANNELS ("name=ENV_VAR[:min_severity],...") as channels, and one error per entry
    that cannot be used (the good entries are still used)."""
    channels: dict[str, EnvChannel] = {}
    errors: list[str] = []
    for raw in (spec or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, rest = entry.partition("=")
        name = name.strip()
        if not sep or not name or not rest.strip():
            errors.append(f"NOTIFY_CHANNELS: {entry!r} is not name=ENV_VAR[:min_severity]")
            continue
        if not _CHANNEL_NAME.match(name):
            errors.append(f"NOTIFY_CHANNELS: channel name {name!r} must be letters, digits, _ . - (up to 64)")
            continue
        var, _, severity = rest.strip().partition(":")
        try:
            var = validate_env_name(var)
            level = parse_severity(severity) if severity.strip() else default_severity
        except ChannelConfigError as exc:
            errors.append(f"NOTIFY_CHANNELS: {name}: {exc}")
            continue
        if name in channels:
            errors.append(f"NOTIFY_CHANNELS: channel {name!r} is declared twice; the last one is used")
        channels[name] = EnvChannel(name=name, url_env=var, min_severity=level)
    return list(channels.values()), errors


def sync_env_channels(spec: str | None = None) -> list[NotificationChannel]:
    """Create or update the channels NOTIFY_CHANNELS declares. A channel the setting no longer
    names is left as it is (disable or delete it in the admin)."""
    from django.conf import settings

    parsed, errors = parse_env_channels(settings.NOTIFY_CHANNELS if spec is None else spec,
                                        default_severity=default_min_severity())
    for error in errors:
        log.error("notification channel not configured", error=error)
    synced = []
    for env in parsed:
        # No row lock: a flush holds its channel's row while it claims deliveries, and the alert
        # fan-out that calls this must never wait for that.
        channel, created = NotificationChannel.objects.get_or_create(
            name=env.name, defaults={"url_env": env.url_env, "min_severity": env.min_severity.value})
        changes = {}
        if not created and (channel.url_env != env.url_env or channel.url_encrypted):
            if channel.url_encrypted:
                log.warning("NOTIFY_CHANNELS replaces the stored URL of a channel of the same name",
                            channel=env.name, url_env=env.url_env)
            changes.update(url_env=env.url_env, url_encrypted="")
        if not created and channel.min_severity != env.min_severity.value:
            changes["min_severity"] = env.min_severity.value
        if changes:
            NotificationChannel.objects.filter(pk=channel.pk).update(**changes)
            for field, value in changes.items():
                setattr(channel, field, value)
        if created or changes:
            log.info("notification channel from the environment", channel=env.name, url_env=env.url_env,
                     min_severity=env.min_severity.value, created=created,
                     url_set=bool(os.environ.get(env.url_env, "").strip()))
        synced.append(channel)
    return synced


# --- reads ---------------------------------------------------------------------------------

def channel_list() -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.order_by("name")


def delivery_list() -> QuerySet[NotificationDelivery]:
    return NotificationDelivery.objects.select_related("channel").order_by("-created_at", "-pk")


def pending_count(channel: NotificationChannel) -> int:
    return channel.deliveries.filter(status=DeliveryStatus.PENDING).count()
