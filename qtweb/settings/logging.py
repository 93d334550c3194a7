"""Logging: every line is one JSON object (see qtweb/logging.py for the processors)."""
from .env import read

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "qtweb.logging.json_formatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json"},
    },
    "root": {"handlers": ["console"], "level": read("LOG_LEVEL").upper()},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": "INFO"},
        # One line per task received/succeeded would dominate the logs at hundreds of
        # events per second; failures and retries are still logged (WARNING and up).
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "twisted": {"level": "WARNING"},
    },
}
