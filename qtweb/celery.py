"""The Celery app: queues, routing, and the process hooks.

Queues come from qtweb/queues.py; each task's queue and execution semantics from its decorator
(qtweb/taskqueue.py); schedules from qtweb/schedules.py; worker start/stop hooks (heartbeats,
health server, outbox re-dispatch, the apps' hooks of qtweb/lifecycle.py) from qtweb/worker.py.
"""
import os

from celery import Celery
from kombu import Queue as KombuQueue

from qtweb.queues import Queue
from qtweb.taskqueue import route_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qtweb.settings.local")

app = Celery("quantum_trader")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
app.conf.task_default_queue = Queue.OPS.value

# Each task declares its queue on its decorator (qtweb/taskqueue.py, @queue_task), which also
# gives execution-queue tasks acks_late and reject_on_worker_lost; messages are routed from that
# table. A task not declared there goes to the default queue; apply_async(queue=...) wins.
app.conf.task_routes = (route_task,)

app.autodiscover_tasks(["qtweb.events", "qtweb.rpc"])
app.autodiscover_tasks()  # <app>.tasks of every installed app

import qtweb.worker  # noqa: E402,F401  (connects the worker/task signal handlers)
