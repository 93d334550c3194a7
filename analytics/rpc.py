"""RPC commands of the analytics-os service (answered on the ops queue)."""
from qtweb.queues import Service
from qtweb.rpc import command
from qtweb.rpc.registry import ping_reply


@command(Service.ANALYTICS, "ping")
def ping() -> dict:
    return ping_reply(Service.ANALYTICS)


@command(Service.ANALYTICS, "trigger_retraining")
def trigger_retraining(model_id) -> dict:
    """Queue a retraining job for a model (a version id or a type). Returns {job_id, ...}.
    An unknown model or a job of that type already queued or running is refused by name."""
    from analytics.learning import jobs

    job = jobs.request_retraining(model_type=jobs.model_type_for(model_id), trigger="manual",
                                  reason=f"requested over RPC for {model_id!r}", requested_by="rpc")
    return jobs.as_dict(job)


@command(Service.ANALYTICS, "get_retraining_job")
def get_retraining_job(job_id) -> dict:
    from analytics.learning import jobs

    return jobs.job_status(job_id)


@command(Service.ANALYTICS, "get_drift")
def get_drift() -> list[dict]:
    """The latest drift score of every champion, with its parts."""
    from analytics.learning.monitor import drift_summary

    return drift_summary()


@command(Service.ANALYTICS, "get_system_health")
def get_system_health() -> dict:
    """The whole health graph (services, queues, workers, modules, dependencies, processes) as the
    monitor last built it, with its age; built now when the monitor has not run yet."""
    from datetime import UTC, datetime

    from analytics.health import graph as health_graph

    g = health_graph.latest()
    if g is None:
        g = health_graph.build()
        g["source"] = "built on request (the monitor has not stored one)"
    age = (datetime.now(UTC) - datetime.fromisoformat(g["generated_at"])).total_seconds()
    return {**g, "age_seconds": round(age, 1)}


@command(Service.ANALYTICS, "get_portfolio_state")
def get_portfolio_state() -> dict:
    """The open positions with their intelligence, the exposures per symbol and sector, the balancer's
    caps and HFOS's last decision."""
    from analytics.orchestration.service import portfolio_state

    return portfolio_state()
