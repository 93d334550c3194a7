"""Bench-only worker settings: qtweb.settings.test with the workers' database connection
handling as it was before commit 522e5c0, so the benchmark can show in one run what keeping
the connection is worth (and catch a regression if the setting is ever dropped).

Without CELERY_DB_REUSE_MAX, Celery's Django fix-up closes every database connection before
and after every task, so each event delivery opens a new PostgreSQL session.
"""
from qtweb.settings.test import *  # noqa: F401,F403

CELERY_DB_REUSE_MAX = None
