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
        {"services": service_statuses(), "stale_seconds": settings.HEARTBEAT_STALE_SECONDS,
         "simulated_market": _simulated_market()},
    )


def _simulated_market() -> dict | None:
    """The simulator's planted strength when the system trades the simulated market (so the page
    can say that the demo's edge is planted), else None."""
    if settings.MARKET_EXCHANGE != "paper":
        return None
    from trading.models import SimulatorState

    row = SimulatorState.objects.filter(name="default").only("state").first()
    alpha = float(((row.state or {}).get("model") or {}).get("alpha", 0.0)) if row else None
    return {"alpha": alpha}
