"""`make run` on a laptop: embedded SQLite and Redis unless DATABASE_URL / REDIS_URL say otherwise."""
from .base import *  # noqa: F401,F403
from .env import read

DEBUG = read("DEBUG")
if not SECRET_KEY:  # noqa: F405
    # A local run without a key gets a per-install key kept in var/ (never committed).
    import secrets
    from pathlib import Path

    _key_file = Path(VAR_DIR) / "secret_key"  # noqa: F405
    if not _key_file.exists():
        _key_file.parent.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()
