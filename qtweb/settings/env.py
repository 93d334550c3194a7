"""The one place the environment is read.

Every setting that an operator can change is declared here with its type and default, so
README's configuration table and this file say the same thing.
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

# Port of the embedded Redis that `make run` starts when REDIS_URL is not set. Not 6379, so
# it never collides with a system Redis on a developer machine.
EMBEDDED_REDIS_PORT = 6390

env = environ.Env(
    DEBUG=(bool, False),
    SECRET_KEY=(str, ""),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    LOG_LEVEL=(str, "INFO"),
    DATABASE_URL=(str, f"sqlite:///{VAR_DIR / 'quantum_trader.sqlite3'}"),
    REDIS_URL=(str, f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"),
    QT_SERVICE=(str, "web"),
    HEALTH_BIND=(str, "127.0.0.1"),
    HEALTH_PORT=(int, 0),
    HEARTBEAT_INTERVAL_SECONDS=(float, 5.0),
    HEARTBEAT_STALE_SECONDS=(float, 15.0),
    EVENT_RETENTION_HOURS=(float, 72.0),
    HEARTBEAT_RETENTION_HOURS=(float, 1.0),
    EVENT_REDISPATCH_AFTER_SECONDS=(float, 60.0),
    EVENT_MAX_RETRIES=(int, 5),
    EVENT_RETRY_BACKOFF_SECONDS=(float, 1.0),
    RPC_DEFAULT_TIMEOUT_SECONDS=(float, 2.0),
    RPC_DEFAULT_RETRIES=(int, 2),
    METRICS_TOKEN=(str, ""),
)
