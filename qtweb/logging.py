"""Structured logging: one JSON object per line with trace_id, service, queue and task.

stdlib loggers (Django, Celery) and structlog loggers share the same processors, so every
line in var/log/ parses as JSON whichever library wrote it.
"""
from __future__ import annotations

import logging

import structlog

from qtweb import tracing


def _add_platform_fields(logger, method_name, event_dict):
    from django.conf import settings

    event_dict.setdefault("service", getattr(settings, "QT_SERVICE", "web"))
    event_dict.setdefault("trace_id", tracing.current_trace_id())
    return event_dict


_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    _add_platform_fields,
]


def json_formatter() -> logging.Formatter:
    """Formatter for the stdlib handlers (used by settings.LOGGING)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_structlog() -> None:
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str):
    return structlog.get_logger(name)
