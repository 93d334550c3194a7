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
    CSRF_TRUSTED_ORIGINS=(list, []),
    SESSION_COOKIE_SECURE=(bool, True),  # production only: cookies over HTTPS only
    CSRF_COOKIE_SECURE=(bool, True),  # production only
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
    MARKET_EXCHANGE=(str, "paper"),
    MODEL_ARTIFACTS_DIR=(str, ""),
    STRATEGIES_DIR=(str, ""),
    MAX_PARALLEL_PREDICTIONS=(int, 4),
    EXECUTION_EXCHANGE=(str, ""),
    EXECUTION_ACCOUNT=(str, "default"),
    EXECUTION_LEVERAGE=(int, 2),
    EXECUTION_SWEEP_SECONDS=(float, 5.0),
    POSITION_MONITOR_SECONDS=(float, 10.0),
    RECONCILE_SECONDS=(float, 60.0),
    RL_SIZING_ALLOWED_FRACTION=(float, 0.1),
    RL_SIZING_MODE=(str, "kelly"),
    RL_META_STRATEGY_ENABLED=(bool, False),
    RL_META_EXPLORATION_RATE=(float, 0.05),
    ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS=(float, 180.0),
    SIM_SPEED_FACTOR=(float, 1.0),
    SIM_SEED=(int, 42),
    SIM_ALPHA=(float, 0.5),
    CLM_DRIFT_THRESHOLD=(float, 0.15),
    CLM_DRIFT_CHECK_SECONDS=(float, 300.0),
    CLM_DRIFT_WINDOW_BARS=(int, 288),
    CLM_DRIFT_COOLDOWN_MINUTES=(float, 360.0),
    CLM_RETRAINING_INTERVAL_HOURS=(float, 24.0),
    CLM_RETRAIN_DAYS=(float, 14.0),
    CLM_JUDGE_BARS=(int, 576),
    CLM_PROMOTION_MARGIN_BPS=(float, 1.0),
    CLM_NEURAL_MAX_EPOCHS=(int, 5),
    CLM_JOB_STALE_SECONDS=(float, 120.0),
    CLM_JOB_MAX_ATTEMPTS=(int, 2),
    POSITION_ATR_TIMEFRAME=(str, "1h"),
    FEED_POLL_SECONDS=(float, 5.0),
    EXCHANGE_SANDBOX=(bool, False),
    EXCHANGE_BASE_URL=(str, ""),
    EXCHANGE_TIMEOUT_MS=(int, 10_000),
    UNIVERSE_TIMEFRAME=(str, "5m"),
    UNIVERSE_SCAN_SECONDS=(float, 300.0),
    UNIVERSE_TOP_N=(int, 20),
    UNIVERSE_MIN_QUOTE_VOLUME_USD=(float, 1_000_000.0),
    UNIVERSE_MAX_SPREAD_PCT=(float, 0.5),
    AI_SERVICE_ENABLED=(bool, True),
    EXEC_RISK_SERVICE_ENABLED=(bool, True),
    ANALYTICS_OS_SERVICE_ENABLED=(bool, True),
    AI_SERVICE_SHADOW=(bool, False),
    EXEC_RISK_SERVICE_SHADOW=(bool, False),
    ANALYTICS_OS_SERVICE_SHADOW=(bool, False),
    DISABLED_SERVICE_RETENTION_HOURS=(float, 72.0),
    PROCESS_MANAGER=(str, "supervisor"),
    SUPERVISOR_SOCKET=(str, ""),
    SELF_HEALING_RESTART_COOLDOWN_SECONDS=(float, 60.0),
    SELF_HEALING_MEMORY_THRESHOLD_PCT=(float, 85.0),
    SELF_HEALING_MAX_RESTARTS=(int, 3),
    SELF_HEALING_RESTART_WINDOW_SECONDS=(float, 900.0),
    SELF_HEALING_AUTO_RESUME=(bool, False),
    SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS=(float, 30.0),
    SELF_HEALING_MODEL_FAILURES=(int, 3),
    SELF_HEALING_MODEL_RECOVERIES=(int, 3),
    QUEUE_STUCK_SECONDS=(float, 180.0),
    NOTIFY_CHANNELS=(str, ""),
    NOTIFY_MIN_SEVERITY=(str, "warning"),
    PBA_ENABLED=(bool, False),
    PBA_MAX_SECTOR_EXPOSURE_PCT=(str, "30"),
    PBA_MAX_TOTAL_EXPOSURE_PCT=(str, "100"),
    PBA_MAX_POSITIONS=(int, 10),
    PBA_REBALANCE_BAND_PCT=(str, "0.5"),
    PBA_REBALANCE_INTERVAL_SECONDS=(float, 600.0),
    PAL_ENABLED=(bool, False),
    PAL_MIN_PROFIT_PCT=(str, "5"),
    PAL_AMPLIFICATION_FACTOR=(str, "1.5"),
    PAL_WINDOW_SECONDS=(float, 14400.0),
    PIL_ENABLED=(bool, False),
    PIL_INTERVAL_SECONDS=(float, 60.0),
    HFOS_PRIORITY_HIERARCHY=(list, ["self_healing", "risk", "hfos", "pba", "pal"]),
    HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT=(str, "5"),
    HFOS_STATE_MAX_AGE_SECONDS=(float, 300.0),
    FIELD_ENCRYPTION_KEY=(str, ""),
)


def read(name: str):
    """One setting from the environment, typed by the table above.

    An empty value means "use the default" (as with an unset variable). A value that does not
    parse stops start-up with the variable named, instead of a bare ValueError deep in Django.
    """
    import os

    from django.core.exceptions import ImproperlyConfigured

    if os.environ.get(name) == "":
        os.environ.pop(name)
    try:
        return env(name)
    except Exception as exc:
        raise ImproperlyConfigured(f"environment variable {name}={os.environ.get(name)!r} is invalid: {exc}") from None


def read_database_url(name: str = "DATABASE_URL") -> dict:
    import os

    from django.core.exceptions import ImproperlyConfigured

    if os.environ.get(name) == "":
        os.environ.pop(name)
    raw = env(name)
    try:
        db = env.db_url_config(raw)
    except Exception as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a database URL: {exc}") from None
    if not db.get("ENGINE") or db["ENGINE"] not in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
        raise ImproperlyConfigured(
            f"{name}={raw!r}: use postgres://... or sqlite:///path (got engine {db.get('ENGINE')!r})"
        )
    return db
