from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from qtweb.health.status import service_statuses


@login_required
def dashboard(request):
    """The live page: the service health grid, updated over the dashboard websocket."""
    return render(
        request,
        "dashboard/index.html",
        {"services": service_statuses(), "stale_seconds": settings.HEARTBEAT_STALE_SECONDS},
    )
