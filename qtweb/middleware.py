"""HTTP requests join or start a trace: `X-Trace-Id` in, the same header out."""
from __future__ import annotations

from qtweb import tracing

TRACE_HTTP_HEADER = "X-Trace-Id"


class TraceIdMiddleware:
    """Binds a trace id for the request (the caller's if valid, else a new one), so every log
    line and event published while handling it carries that id; echoes it in the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(TRACE_HTTP_HEADER)
        trace_id = incoming if tracing.is_valid_trace_id(incoming) else tracing.new_trace_id()
        token = tracing.set_trace_id(trace_id)
        try:
            response = self.get_response(request)
        finally:
            tracing.reset_trace_id(token)
        response[TRACE_HTTP_HEADER] = trace_id
        return response
