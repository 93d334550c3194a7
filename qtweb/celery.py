"""The Celery app: queues, routing, execution-queue semantics, and the process hooks.

Queues come from qtweb/queues.py; schedules from qtweb/schedules.py; worker start/stop hooks
(heartbeats, health server, outbox re-dispatch) from qtweb/worker.py.
"""
import os

from celery import Celery
from kombu import Queue as KombuQueue

from qtweb.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qtweb.settings.local")

app = Celery("quantum_trader")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
app.conf.task_default_queue = Queue.OPS.value

# Routing by task-name prefix, the one place a task's queue is decided (Celery 5.7 deprecates
# queue= on the task decorator). Name tasks "<app>.<area>.<verb>"; apply_async(queue=...) wins.
app.conf.task_routes = [
    {
        "ai.*": {"queue": Queue.INFERENCE.value},
        "trading.*": {"queue": Queue.EXECUTION.value},
        "risk.*": {"queue": Queue.EXECUTION.value},
        "analytics.learning.*": {"queue": Queue.LEARNING.value},
        "analytics.*": {"queue": Queue.OPS.value},
        "qtweb.*": {"queue": Queue.OPS.value},
    }
]

# Options every execution-queue task must carry (use: @shared_task(**EXECUTION_TASK_OPTIONS)).
# acks_late + reject_on_worker_lost: a message is acknowledged only once the task finished, so
# a worker that dies mid-order leaves it on the queue; the task must therefore be idempotent
# (client order ids, processed markers). Their names start with trading. or risk., which
# routes them to the execution queue. Prefetch 1 is set on the execution worker's command
# line (deploy/supervisord.conf, docker-compose.yml) so one slow order never holds others.
EXECUTION_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
}

app.autodiscover_tasks(["qtweb.events", "qtweb.rpc"])
app.autodiscover_tasks()  # <app>.tasks of every installed app

import qtweb.worker  # noqa: E402,F401  (connects the worker/task signal handlers)
