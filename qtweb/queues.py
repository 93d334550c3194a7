"""The queues and services of the design, declared once.

Tasks name their queue on their decorator (qtweb/taskqueue.py); workers, RPC and health read
the tables below, so adding a service means editing this file only.
"""
from enum import StrEnum


class Queue(StrEnum):
    # Model inference, signals, the universe scan: latency-sensitive, CPU-bound, per timeframe.
    INFERENCE = "inference"
    # Risk validation, orders, fills, positions. Runs with prefetch 1, acks_late and
    # reject_on_worker_lost, so every task on it must be idempotent.
    EXECUTION = "execution"
    # Training, drift detection, backtests: long CPU-heavy jobs that must not delay ops.
    LEARNING = "learning"
    # Event fan-out, health, alerts, rebalancing, housekeeping: short and frequent.
    OPS = "ops"


class Service(StrEnum):
    WEB = "web"
    AI = "ai-service"
    EXEC_RISK = "exec-risk-service"
    ANALYTICS = "analytics-os-service"


# Which queues each worker service consumes.
SERVICE_QUEUES: dict[Service, tuple[Queue, ...]] = {
    Service.AI: (Queue.INFERENCE,),
    Service.EXEC_RISK: (Queue.EXECUTION,),
    Service.ANALYTICS: (Queue.LEARNING, Queue.OPS),
}

# The queue that answers a service's RPC commands (analytics answers on ops: RPC is short).
SERVICE_RPC_QUEUE: dict[Service, Queue] = {
    Service.AI: Queue.INFERENCE,
    Service.EXEC_RISK: Queue.EXECUTION,
    Service.ANALYTICS: Queue.OPS,
}

# Health and metrics HTTP port of each service.
SERVICE_PORTS: dict[Service, int] = {
    Service.WEB: 8000,
    Service.AI: 8001,
    Service.EXEC_RISK: 8002,
    Service.ANALYTICS: 8003,
}

# Short names accepted wherever a person types a service (rpc.call("ai", "ping")).
SERVICE_ALIASES: dict[str, Service] = {
    "ai": Service.AI,
    "exec-risk": Service.EXEC_RISK,
    "analytics": Service.ANALYTICS,
    "web": Service.WEB,
    **{s.value: s for s in Service},
}


def service_for_queue(queue: str) -> Service:
    for service, queues in SERVICE_QUEUES.items():
        if queue in queues:
            return service
    raise ValueError(f"unknown queue {queue!r}; known queues: {[q.value for q in Queue]}")


def resolve_service(name: str) -> Service:
    try:
        return SERVICE_ALIASES[name]
    except KeyError:
        raise ValueError(
            f"unknown service {name!r}; known services: {sorted(SERVICE_ALIASES)}"
        ) from None


# The design's service switches (README "Service switches"): settings named after each service.
_SWITCH_PREFIX: dict[Service, str] = {
    Service.AI: "AI_SERVICE",
    Service.EXEC_RISK: "EXEC_RISK_SERVICE",
    Service.ANALYTICS: "ANALYTICS_OS_SERVICE",
}


def service_enabled(service: Service | str) -> bool:
    """False when the service is switched off (<SERVICE>_ENABLED=false). The web is always on."""
    from django.conf import settings

    prefix = _SWITCH_PREFIX.get(Service(service))
    return True if prefix is None else bool(getattr(settings, f"{prefix}_ENABLED", True))


def service_shadow(service: Service | str) -> bool:
    """True when the service runs in SHADOW: it decides and records, but does not act."""
    from django.conf import settings

    prefix = _SWITCH_PREFIX.get(Service(service))
    return False if prefix is None else bool(getattr(settings, f"{prefix}_SHADOW", False))


def queue_enabled(queue: Queue | str) -> bool:
    """Whether the service consuming `queue` is enabled (events to a disabled one wait in the outbox)."""
    return service_enabled(service_for_queue(str(queue)))
