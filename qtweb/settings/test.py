"""Test settings: real PostgreSQL and Redis (DATABASE_URL / REDIS_URL from make test)."""
from .base import *  # noqa: F401,F403

SECRET_KEY = SECRET_KEY or "test-only-key-not-secret"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation
