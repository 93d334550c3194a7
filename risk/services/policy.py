"""The policy store: versioned RiskPolicy rows, a cached current policy, edits that publish
`policy.updated`.

Reads are hot (every risk decision): the current policy is memoised per process under its
version, and the version itself is one cache (Redis) GET, so an edit made anywhere is seen by
every worker at its next decision. An edit writes a new row and the event in one transaction
and drops the cached version on commit.
"""
from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction

from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.logging import get_logger
from qtweb.tracing import current_trace_id
from risk.domain.policy import Policy, PolicyError
from risk.models import RiskPolicy

log = get_logger(__name__)

VERSION_CACHE_KEY = "risk:policy:version"
VALUES_CACHE_KEY = "risk:policy:values"
CACHE_SECONDS = 3600  # a lost key only costs one DB read; an edit deletes it at once
DEFAULTS_AUTHOR = "system"

_memo: tuple[int, Policy] | None = None


def _from_row(row: RiskPolicy) -> Policy:
    return Policy.from_values({**row.values, "version": row.version})


def _ensure_first_version() -> RiskPolicy:
    """Version 1 holds the design's defaults; created on first use."""
    try:
        with transaction.atomic():
            return RiskPolicy.objects.create(version=1, values=Policy().to_values(), changed_fields=[],
                                             created_by=DEFAULTS_AUTHOR, reason="the design's defaults")
    except IntegrityError:  # another process created it first
        return RiskPolicy.objects.get(version=1)


def policy_current_row() -> RiskPolicy:
    row = RiskPolicy.objects.order_by("-version").first()
    return row if row is not None else _ensure_first_version()


def policy_get() -> Policy:
    """The policy in force (newest version)."""
    global _memo
    cached = cache.get_many([VERSION_CACHE_KEY, VALUES_CACHE_KEY])
    version, values = cached.get(VERSION_CACHE_KEY), cached.get(VALUES_CACHE_KEY)
    if version is not None and _memo is not None and _memo[0] == version:
        return _memo[1]
    if version is not None and values is not None:
        policy = Policy.from_values({**values, "version": version})
    else:
        row = policy_current_row()
        policy = _from_row(row)
        cache.set_many({VERSION_CACHE_KEY: row.version, VALUES_CACHE_KEY: row.values}, CACHE_SECONDS)
    _memo = (policy.version, policy)
    return policy


def policy_invalidate() -> None:
    global _memo
    cache.delete_many([VERSION_CACHE_KEY, VALUES_CACHE_KEY])
    _memo = None


def forget_memo() -> None:
    """Drop this process's memo only; the shared cache stays (a rebuilt test database, a forked
    worker process)."""
    global _memo
    _memo = None


def policy_update(*, changes: dict[str, Any], updated_by: str, reason: str = "") -> RiskPolicy:
    """Create the next policy version from the current one plus `changes`.

    Raises PolicyError naming every bad or unknown field, or when nothing would change. Writes
    the row and `policy.updated` in one transaction; caches are dropped on commit.
    """
    if not isinstance(changes, dict) or not changes:
        raise PolicyError("no changes given: pass at least one policy field")
    if not updated_by or not str(updated_by).strip():
        raise PolicyError("updated_by is required (who changed the policy)")
    from risk.services.modes import governor_state_locked

    with transaction.atomic():
        governor_state_locked()  # a fixed row: concurrent edits queue here, then read the newest version
        current = RiskPolicy.objects.order_by("-version").first() or _ensure_first_version()
        merged = {**current.values, **changes}
        new_policy = Policy.from_values(merged)  # raises PolicyError listing every bad field
        new_values = new_policy.to_values()
        changed = sorted(k for k in new_values if new_values[k] != current.values.get(k))
        if not changed:
            raise PolicyError("nothing changed: every given value equals the policy in force "
                              f"(version {current.version})")
        row = RiskPolicy.objects.create(version=current.version + 1, values=new_values, changed_fields=changed,
                                        created_by=str(updated_by)[:150], reason=str(reason or "")[:2000],
                                        trace_id=current_trace_id() or "")
        publish(EventType.POLICY_UPDATED, {"policy_version": row.version, "changed_fields": changed,
                                           "updated_by": str(updated_by)[:128]})
        policy_invalidate()  # readers fall back to the DB (which shows the new row only after commit)
        transaction.on_commit(policy_invalidate)
    log.info("risk policy updated", policy_version=row.version, changed_fields=changed, updated_by=updated_by)
    return row
