"""Configuration errors stop start-up with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _setup(module: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    full.update(DJANGO_SETTINGS_MODULE=module, **env)
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['ENGINE'])"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("module", "env", "message"),
    [
        ("qtweb.settings.production", {}, "SECRET_KEY must be set"),
        ("qtweb.settings.test", {"DATABASE_URL": "foo://x"}, "DATABASE_URL='foo://x'"),
        ("qtweb.settings.test", {"DATABASE_URL": "mysql://root@localhost/db"}, "use postgres://"),
        ("qtweb.settings.test", {"HEARTBEAT_INTERVAL_SECONDS": "soon"}, "HEARTBEAT_INTERVAL_SECONDS='soon' is invalid"),
    ],
)
def test_bad_configuration_names_the_variable(module, env, message):
    result = _setup(module, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_empty_values_mean_the_default():
    result = _setup("qtweb.settings.test", DATABASE_URL="", HEARTBEAT_INTERVAL_SECONDS="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"
