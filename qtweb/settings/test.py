"""Test settings: real PostgreSQL and Redis (DATABASE_URL / REDIS_URL from make test)."""
import os

from .base import *  # noqa: F401,F403

SECRET_KEY = SECRET_KEY or "test-only-key-not-secret"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation

# Probe subscribers and tasks used by the integration tests (tests/support).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.apps.SupportConfig"]  # noqa: F405
# Retries fast in tests: three tries 0.2 s apart instead of five growing from 1 s.
EVENT_MAX_RETRIES = int(os.environ.get("EVENT_MAX_RETRIES") or 2)
EVENT_RETRY_BACKOFF_SECONDS = float(os.environ.get("EVENT_RETRY_BACKOFF_SECONDS") or 0.2)
# The crash tests' fault points (trading/execution/orders.py::_fault_point) are live only in
# test workers; production settings never enable them.
EXECUTION_FAULTS_ENABLED = True
LEARNING_FAULTS_ENABLED = True
AI_FAULTS_ENABLED = True  # a model that raises on every call (self-healing quarantines it)
# A retraining job given up for dead sooner than in production, so the crash test's reaper (the
# real task on the ops worker) acts within seconds.
CLM_JOB_STALE_SECONDS = float(os.environ.get("CLM_JOB_STALE_SECONDS") or 30)

# The meta-strategy's choices are deterministic in tests (its exploration has a test of its own).
RL_META_EXPLORATION_RATE = 0.0
