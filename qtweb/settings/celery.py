"""Celery settings (read by qtweb/celery.py with namespace CELERY)."""
from .env import read

_redis = read("REDIS_URL")

CELERY_BROKER_URL = _redis
CELERY_RESULT_BACKEND = _redis  # only RPC replies are stored; every other task ignores results
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 300  # an RPC reply nobody read within 5 min is garbage
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Time limits: no task may hold a worker forever. Long jobs (training) raise their own limits.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_TASK_DEFAULT_QUEUE = "ops"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publisher must not hang when Redis is gone: the outbox keeps the event and the
# redispatcher sends it later, so give up on the broker quickly.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# Unacked (acks_late) messages come back to the queue after this long if a worker vanished.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_timeout": 5, "socket_connect_timeout": 3}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 3}
# Celery's Django fix-up closes every database connection before and after each task unless
# this is set: each event delivery then opened a new PostgreSQL session (measured: 125 -> 406
# deliveries/s, publish->handled p50 20 -> 6.7 ms; docs/BENCHMARKS.md). With it set, the
# fix-up leaves connections alone and qtweb/worker.py runs Django's close_old_connections()
# around every task, which honours CONN_MAX_AGE / CONN_HEALTH_CHECKS and drops broken ones.
CELERY_DB_REUSE_MAX = 1_000_000_000
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Self-healing restarts the pool of a worker whose memory passed its threshold (remote control
# pool_restart); Celery refuses that command unless it is enabled.
CELERY_WORKER_POOL_RESTARTS = True
