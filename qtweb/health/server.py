"""The small HTTP server each worker service runs for /health and /metrics on its port.

Two workers of one service (analytics: learning and ops) share a port: whichever binds first
serves it, the other keeps trying every few seconds and takes over if the first one dies.
Both answer for the whole service, since health reads every worker's heartbeat from the DB.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from django.db import close_old_connections

from qtweb.logging import get_logger
from qtweb.queues import Service

log = get_logger(__name__)

BIND_RETRY_SECONDS = 5.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "QuantumTraderWorker/1"
    service: Service
    local_queues: dict

    def do_GET(self) -> None:  # noqa: N802
        from qtweb import metrics
        from qtweb.health.status import worker_health

        close_old_connections()
        try:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                body, status = worker_health(self.service, self.local_queues)
                self._send(status, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                if settings.METRICS_TOKEN and self.headers.get("Authorization") != f"Bearer {settings.METRICS_TOKEN}":
                    self._send(401, "text/plain", b"metrics require the bearer token\n")
                    return
                text, ctype = metrics.render(self.service.value)
                self._send(200, ctype, text)
            else:
                self._send(404, "application/json", b'{"error": "not found; try /health or /metrics"}')
        finally:
            close_old_connections()

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args) -> None:  # access logs would drown the worker log
        pass


class HealthServerThread(threading.Thread):
    def __init__(self, service: Service, port: int, local_queues: dict):
        super().__init__(name=f"health-http-{port}", daemon=True)
        self.service, self.port = service, port
        self.handler = type("Handler", (_Handler,), {"service": service, "local_queues": local_queues})
        self.httpd: ThreadingHTTPServer | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.httpd = ThreadingHTTPServer((settings.HEALTH_BIND, self.port), self.handler)
            except OSError:
                self._stop_event.wait(BIND_RETRY_SECONDS)  # a sibling worker serves the port
                continue
            log.info("health server listening", port=self.port, service=self.service.value)
            self.httpd.serve_forever(poll_interval=0.5)
            return

    def stop(self) -> None:
        self._stop_event.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
