"""The production shape (docker-compose.yml) matches the design. Docker cannot run here, so this
checks the file itself; .ci/run also runs `docker compose config -q` where the plugin exists."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_one_worker_per_queue_web_beat_and_the_stores():
    services = _compose()["services"]
    assert {"redis", "postgres", "web", "beat", "worker-inference", "worker-execution", "worker-learning",
            "worker-ops"} <= set(services)
    for queue in ("inference", "execution", "learning", "ops"):
        cmd = services[f"worker-{queue}"]["command"]
        assert cmd[cmd.index("-Q") + 1] == queue
    exec_cmd = services["worker-execution"]["command"]
    assert exec_cmd[exec_cmd.index("--prefetch-multiplier") + 1] == "1"


def test_redis_is_durable_and_never_evicts_broker_messages():
    cmd = " ".join(_compose()["services"]["redis"]["command"])
    assert "--appendonly yes" in cmd and "--appendfsync everysec" in cmd and "--maxmemory-policy noeviction" in cmd


def test_long_running_services_restart_and_have_healthchecks():
    services = _compose()["services"]
    for name, svc in services.items():
        if name == "migrate":
            assert svc.get("restart") == "no"
            continue
        assert svc.get("restart") in ("unless-stopped", "always"), name
        if name != "beat":  # beat serves no port; it is restarted by policy
            assert "healthcheck" in svc, name
    assert "/health" in str(services["web"]["healthcheck"]["test"])


def test_secret_key_is_required_not_defaulted():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "SECRET_KEY:?" in text.replace(" ", "")


def test_every_app_container_shares_the_model_artifacts():
    """A challenger promoted by worker-learning must be loadable by worker-inference."""
    compose = _compose()
    assert "models" in compose["volumes"]
    for name, svc in compose["services"].items():
        if name in ("redis", "postgres"):
            continue
        assert "models:/app/var/models" in svc.get("volumes", []), name
        assert svc["environment"]["MODEL_ARTIFACTS_DIR"] == "/app/var/models", name


def test_a_dead_frozen_or_stuck_worker_container_is_ended_by_its_healthcheck_and_restarted():
    """No process manager to call in a container: the healthcheck ends the worker (which is not
    PID 1, so the kernel lets it) and the restart policy starts it again."""
    services = _compose()["services"]
    for queue in ("inference", "execution", "learning", "ops"):
        svc = services[f"worker-{queue}"]
        assert svc["healthcheck"]["test"] == ["CMD", "python", "manage.py", "worker_health", "--queue", queue,
                                              "--kill"]
        assert svc.get("init") is True, queue
        assert svc["restart"] == "unless-stopped"
        assert svc["environment"]["PROCESS_MANAGER"] == "none"
