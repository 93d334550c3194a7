"""Settings shared by every environment. Integrations live in their own modules."""
from core.enums import Timeframe

from .env import BASE_DIR, VAR_DIR, read, read_database_url

DEBUG = read("DEBUG")
SECRET_KEY = read("SECRET_KEY")
ALLOWED_HOSTS = read("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = read("CSRF_TRUSTED_ORIGINS")  # e.g. https://trader.example.com behind a proxy
LOG_LEVEL = read("LOG_LEVEL").upper()

# Which design service this process belongs to (web, ai-service, exec-risk-service,
# analytics-os-service). Workers set it from their queue at start (qtweb/worker.py).
QT_SERVICE = read("QT_SERVICE")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_filters",
    "django_celery_beat",
    "channels",
    "qtweb.apps.QtwebConfig",
    "trading.apps.TradingConfig",
    "ai.apps.AiConfig",
    "risk.apps.RiskConfig",
    "analytics.apps.AnalyticsConfig",
]

MIDDLEWARE = [
    "qtweb.middleware.TraceIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "qtweb.urls"
ASGI_APPLICATION = "qtweb.asgi.application"
WSGI_APPLICATION = "qtweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_from_env() -> dict:
    db = read_database_url()
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes (web, four workers, beat) share the embedded SQLite file:
        # WAL lets readers run beside the writer, IMMEDIATE takes the write lock at BEGIN
        # so two writers queue instead of failing with "database is locked" mid-transaction.
        db.setdefault("OPTIONS", {}).update(
            {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    else:
        db["CONN_MAX_AGE"] = 60
        db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = read("REDIS_URL")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "qt",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGIN_URL = "/accounts/login/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Quantum Trader API",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # One choice set on two models (healing actions and alert firings): one schema name.
    "ENUM_NAME_OVERRIDES": {"HealingOutcomeEnum": "analytics.models.HealingOutcome"},
}

# --- platform knobs (documented in README "Configuration") ---
HEALTH_BIND = read("HEALTH_BIND")
HEALTH_PORT = read("HEALTH_PORT")  # 0: the service's default port from qtweb/queues.py
HEARTBEAT_INTERVAL_SECONDS = read("HEARTBEAT_INTERVAL_SECONDS")
HEARTBEAT_STALE_SECONDS = read("HEARTBEAT_STALE_SECONDS")
EVENT_RETENTION_HOURS = read("EVENT_RETENTION_HOURS")
HEARTBEAT_RETENTION_HOURS = read("HEARTBEAT_RETENTION_HOURS")
EVENT_REDISPATCH_AFTER_SECONDS = read("EVENT_REDISPATCH_AFTER_SECONDS")
EVENT_MAX_RETRIES = read("EVENT_MAX_RETRIES")
EVENT_RETRY_BACKOFF_SECONDS = read("EVENT_RETRY_BACKOFF_SECONDS")
RPC_DEFAULT_TIMEOUT_SECONDS = read("RPC_DEFAULT_TIMEOUT_SECONDS")
RPC_DEFAULT_RETRIES = read("RPC_DEFAULT_RETRIES")
METRICS_TOKEN = read("METRICS_TOKEN")

# --- market data and the universe scanner ---
MARKET_EXCHANGE = read("MARKET_EXCHANGE")  # gateway id the system trades on ("paper" or a ccxt id)
# Where trained model artifacts are written (default var/models; ai/training.py).
MODEL_ARTIFACTS_DIR = read("MODEL_ARTIFACTS_DIR")
STRATEGIES_DIR = read("STRATEGIES_DIR") or str(BASE_DIR / "strategies")  # user strategies by file name
MAX_PARALLEL_PREDICTIONS = read("MAX_PARALLEL_PREDICTIONS")  # concurrent inference passes per process
# RL sizing: the equity used when no paper account exists, the share of equity one position may
# take before Kelly and the agent scale it down (the cap itself is the risk policy's
# max_position_usd).
RL_SIZING_ALLOWED_FRACTION = read("RL_SIZING_ALLOWED_FRACTION")
# Which sizer serves: "kelly" (fractional Kelly capped by the policy; the default) or "ppo" (the
# PPO agent, capped by the same Kelly size). Out of sample on the demo market PPO sized worse
# than Kelly-only beyond noise (manage.py evaluate_models, sizing section; README "RL sizing
# evaluated"): it mostly shrank every position. It stays trained daily so it can be re-judged.
RL_SIZING_MODE = read("RL_SIZING_MODE")
if RL_SIZING_MODE not in ("kelly", "ppo"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"RL_SIZING_MODE must be kelly or ppo, got {RL_SIZING_MODE!r}")
# The meta-strategy agent (ai/meta): per (regime, sector) it chooses the trading profile (ensemble
# threshold, horizon, execution strategy, or standing aside). Off until the walk-forward ablation
# shows it helps; off is exactly the behaviour without it.
RL_META_STRATEGY_ENABLED = read("RL_META_STRATEGY_ENABLED")
# The share of its decisions in which the agent tries the profile it knows least (so every profile
# keeps getting rewards); the rest are its cautious choice.
RL_META_EXPLORATION_RATE = read("RL_META_EXPLORATION_RATE")
if not 0 <= RL_META_EXPLORATION_RATE <= 0.5:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"RL_META_EXPLORATION_RATE must be in [0, 0.5], got {RL_META_EXPLORATION_RATE}")
# RL sizing refuses to size on an account snapshot older than this: three reconciliation
# periods (the execution side also refreshes it on every fill).
ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS = read("ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS")
# Simulated market (MARKET_EXCHANGE=paper): speed 1 follows the wall clock; 60 makes a 5m bar
# every 5 s for demos (trading/simulator/service.py).
SIM_SPEED_FACTOR = read("SIM_SPEED_FACTOR")
SIM_SEED = read("SIM_SEED")
# Strength of the simulator's planted momentum effect (trading/simulator/model.py), used when a
# market is seeded: 0.5 is the demo's, at which the models find it after costs; 0 is a market
# with nothing planted. The edge it gives is planted, not evidence about real markets.
SIM_ALPHA = read("SIM_ALPHA")
FEED_POLL_SECONDS = read("FEED_POLL_SECONDS")
# --- the continuous learning manager (analytics/learning) ---
# A model's drift score (the largest of feature PSI, prediction PSI and performance decay; PSI
# scale) above this starts a retraining job. 0.15 sits between the usual "stable" (0.1) and
# "moved a lot" (0.25) readings of PSI.
CLM_DRIFT_THRESHOLD = read("CLM_DRIFT_THRESHOLD")
CLM_DRIFT_CHECK_SECONDS = read("CLM_DRIFT_CHECK_SECONDS")  # how often every champion's drift is scored
# Recent bars per symbol the score looks at: one day of 5m. Half a day mixes too little of the
# market's own regimes for a calm market to stay under the threshold (docs/BENCHMARKS.md).
CLM_DRIFT_WINDOW_BARS = read("CLM_DRIFT_WINDOW_BARS")
# After a drift-triggered job of a type ends, drift starts no new one for that type for this
# long (scheduled and operator requests still do): a market that stays moved is judged once.
CLM_DRIFT_COOLDOWN_MINUTES = read("CLM_DRIFT_COOLDOWN_MINUTES")
CLM_RETRAINING_INTERVAL_HOURS = read("CLM_RETRAINING_INTERVAL_HOURS")  # scheduled retraining of every type
CLM_RETRAIN_DAYS = read("CLM_RETRAIN_DAYS")  # history a challenger is trained and judged on
CLM_JUDGE_BARS = read("CLM_JUDGE_BARS")  # the last bars of it, held out: both models are scored there
# The challenger replaces the champion only when its net return per decision period on the
# judging window beats the champion's by more than this (basis points): a tie keeps the champion.
CLM_PROMOTION_MARGIN_BPS = read("CLM_PROMOTION_MARGIN_BPS")
CLM_NEURAL_MAX_EPOCHS = read("CLM_NEURAL_MAX_EPOCHS")  # cap for N-HiTS and PatchTST challengers
CLM_JOB_STALE_SECONDS = read("CLM_JOB_STALE_SECONDS")  # a running job silent this long lost its worker
CLM_JOB_MAX_ATTEMPTS = read("CLM_JOB_MAX_ATTEMPTS")  # then it is retried until this many attempts, then failed
_CLM_LIMITS = {  # setting: (smallest allowed, why)
    "CLM_DRIFT_THRESHOLD": (1e-6, "a threshold of 0 would retrain on every check"),
    "CLM_DRIFT_CHECK_SECONDS": (1, "a period"), "CLM_DRIFT_WINDOW_BARS": (12, "PSI needs rows"),
    "CLM_DRIFT_COOLDOWN_MINUTES": (0, "a duration"), "CLM_RETRAINING_INTERVAL_HOURS": (0.01, "a period"),
    "CLM_RETRAIN_DAYS": (1, "a challenger needs history"), "CLM_JUDGE_BARS": (24, "two horizons at least"),
    "CLM_PROMOTION_MARGIN_BPS": (0, "a negative margin would promote a worse challenger"),
    "CLM_NEURAL_MAX_EPOCHS": (1, "an epoch at least"), "CLM_JOB_STALE_SECONDS": (4, "four heartbeats fit in it"),
    "CLM_JOB_MAX_ATTEMPTS": (1, "one attempt at least"),
}
for _name, (_least, _why) in _CLM_LIMITS.items():
    if globals()[_name] < _least:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{_name} must be at least {_least} ({_why}), got {globals()[_name]}")
# ccxt backend (keys are read from EXCHANGE_API_KEY / EXCHANGE_API_SECRET by the gateway only,
# never kept in settings).
EXCHANGE_SANDBOX = read("EXCHANGE_SANDBOX")
EXCHANGE_BASE_URL = read("EXCHANGE_BASE_URL")
EXCHANGE_TIMEOUT_MS = read("EXCHANGE_TIMEOUT_MS")
UNIVERSE_TIMEFRAME = read("UNIVERSE_TIMEFRAME")
# --- execution (trading/execution, risk) ---
# The gateway orders go to ("" = MARKET_EXCHANGE) and, on the paper exchange, the account.
EXECUTION_EXCHANGE = read("EXECUTION_EXCHANGE")
EXECUTION_ACCOUNT = read("EXECUTION_ACCOUNT")
EXECUTION_LEVERAGE = read("EXECUTION_LEVERAGE")  # leverage of signal entries on perpetuals (capped by the policy)
EXECUTION_SWEEP_SECONDS = read("EXECUTION_SWEEP_SECONDS")  # resume due slices, stuck intents
POSITION_MONITOR_SECONDS = read("POSITION_MONITOR_SECONDS")  # PnL, TP/SL, trailing (also on each bar)
# The ATR that stop-loss, take-profit and trailing distances are multiples of: the signals'
# holding horizon (12 bars of 5m), so stops sit outside one bar's noise and the costs.
POSITION_ATR_TIMEFRAME = Timeframe.parse(read("POSITION_ATR_TIMEFRAME")).value  # ValueError names the choices
RECONCILE_SECONDS = read("RECONCILE_SECONDS")  # DB vs exchange: orders, positions, balances
UNIVERSE_SCAN_SECONDS = read("UNIVERSE_SCAN_SECONDS")
UNIVERSE_TOP_N = read("UNIVERSE_TOP_N")
UNIVERSE_MIN_QUOTE_VOLUME_USD = read("UNIVERSE_MIN_QUOTE_VOLUME_USD")
UNIVERSE_MAX_SPREAD_PCT = read("UNIVERSE_MAX_SPREAD_PCT")
# --- service switches (README "Service switches") ---
# A disabled service's worker is not started by `make run`, its schedules skip, its health reads
# DISABLED, and events to it wait in the outbox until it is enabled again. SHADOW: the service
# runs and records its decisions but does not act on them (no orders, no healing actions, no
# signals reaching execution).
AI_SERVICE_ENABLED = read("AI_SERVICE_ENABLED")
EXEC_RISK_SERVICE_ENABLED = read("EXEC_RISK_SERVICE_ENABLED")
ANALYTICS_OS_SERVICE_ENABLED = read("ANALYTICS_OS_SERVICE_ENABLED")
AI_SERVICE_SHADOW = read("AI_SERVICE_SHADOW")
EXEC_RISK_SERVICE_SHADOW = read("EXEC_RISK_SERVICE_SHADOW")
ANALYTICS_OS_SERVICE_SHADOW = read("ANALYTICS_OS_SERVICE_SHADOW")
# How long deliveries to a disabled service wait in the outbox before they are given up (marked
# FAILED "expired: ..."); service.heartbeat deliveries wait HEARTBEAT_RETENTION_HOURS at most.
DISABLED_SERVICE_RETENTION_HOURS = read("DISABLED_SERVICE_RETENTION_HOURS")
if not DISABLED_SERVICE_RETENTION_HOURS > 0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"DISABLED_SERVICE_RETENTION_HOURS must be > 0, got {DISABLED_SERVICE_RETENTION_HOURS}")
# --- self-healing (analytics/healing) ---
# How workers are restarted: "supervisor" (make run: supervisord's XML-RPC on SUPERVISOR_SOCKET,
# default var/run/supervisor.sock) or "none" (docker-compose: a healthcheck fails and Docker's
# restart policy acts; self-healing records what it would have done).
PROCESS_MANAGER = read("PROCESS_MANAGER")
SUPERVISOR_SOCKET = read("SUPERVISOR_SOCKET") or str(VAR_DIR / "run" / "supervisor.sock")
SELF_HEALING_RESTART_COOLDOWN_SECONDS = read("SELF_HEALING_RESTART_COOLDOWN_SECONDS")  # restart_cooldown_seconds
SELF_HEALING_MEMORY_THRESHOLD_PCT = read("SELF_HEALING_MEMORY_THRESHOLD_PCT")  # memory_threshold_pct: pool restart
# No restart loops: after this many restarts of one worker within the window, self-healing
# stops it, stops restarting it and raises an operator alert.
SELF_HEALING_MAX_RESTARTS = read("SELF_HEALING_MAX_RESTARTS")
SELF_HEALING_RESTART_WINDOW_SECONDS = read("SELF_HEALING_RESTART_WINDOW_SECONDS")
# The operator's permission to leave the REDUCE_ONLY that self-healing entered while execution was
# unhealthy, once it is healthy again. Off: an operator resumes by hand.
SELF_HEALING_AUTO_RESUME = read("SELF_HEALING_AUTO_RESUME")
# Execution must be CRITICAL this long before self-healing sets REDUCE_ONLY: a worker it restarts
# in seconds, or one still starting with the rest of the system, is not an outage.
SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS = read("SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS")
SELF_HEALING_MODEL_FAILURES = read("SELF_HEALING_MODEL_FAILURES")  # failed votes in a row: quarantine
SELF_HEALING_MODEL_RECOVERIES = read("SELF_HEALING_MODEL_RECOVERIES")  # clean answers in a row: release
# A queue whose oldest message waits longer than this while its worker beats is stuck (the learning
# queue waits at least as long as a retraining job may run: analytics/health/graph.py).
QUEUE_STUCK_SECONDS = read("QUEUE_STUCK_SECONDS")
_HEALING_LIMITS = {
    "SELF_HEALING_RESTART_COOLDOWN_SECONDS": (5, "a restarted worker needs time to come back"),
    "SELF_HEALING_MEMORY_THRESHOLD_PCT": (1, "a percentage"), "SELF_HEALING_MAX_RESTARTS": (1, "one restart"),
    "SELF_HEALING_RESTART_WINDOW_SECONDS": (60, "a window"), "SELF_HEALING_MODEL_FAILURES": (1, "one failure"),
    "SELF_HEALING_MODEL_RECOVERIES": (1, "one answer"), "QUEUE_STUCK_SECONDS": (10, "a task needs time"),
    "SELF_HEALING_REDUCE_ONLY_AFTER_SECONDS": (0, "a duration"),
}
for _name, (_least, _why) in _HEALING_LIMITS.items():
    if globals()[_name] < _least:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{_name} must be at least {_least} ({_why}), got {globals()[_name]}")
if PROCESS_MANAGER not in ("supervisor", "none"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"PROCESS_MANAGER must be supervisor or none, got {PROCESS_MANAGER!r}")
# --- orchestration (analytics/orchestration): HFOS, the portfolio balancer, profit amplification,
# position intelligence. The caps are % of equity in (0, 100]; the hierarchy names every layer once,
# highest first. Wrong values stop start-up with the variable named.
PBA_ENABLED = read("PBA_ENABLED")
PBA_MAX_SECTOR_EXPOSURE_PCT = read("PBA_MAX_SECTOR_EXPOSURE_PCT")
PBA_MAX_TOTAL_EXPOSURE_PCT = read("PBA_MAX_TOTAL_EXPOSURE_PCT")
PBA_MAX_POSITIONS = read("PBA_MAX_POSITIONS")
# A cap is breached only beyond cap + this band (percentage points), then reduced to the cap: no churn.
PBA_REBALANCE_BAND_PCT = read("PBA_REBALANCE_BAND_PCT")
PBA_REBALANCE_INTERVAL_SECONDS = read("PBA_REBALANCE_INTERVAL_SECONDS")
PAL_ENABLED = read("PAL_ENABLED")
PAL_MIN_PROFIT_PCT = read("PAL_MIN_PROFIT_PCT")
PAL_AMPLIFICATION_FACTOR = read("PAL_AMPLIFICATION_FACTOR")
PAL_WINDOW_SECONDS = read("PAL_WINDOW_SECONDS")  # one add per position within this window
PIL_ENABLED = read("PIL_ENABLED")
PIL_INTERVAL_SECONDS = read("PIL_INTERVAL_SECONDS")  # how often open positions are classified (and PAL runs)
HFOS_PRIORITY_HIERARCHY = [x.strip() for x in read("HFOS_PRIORITY_HIERARCHY") if x.strip()]
HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT = read("HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT")
# The account snapshot (equity, drawdown) older than this is unknown: the orchestrator decides nothing.
HFOS_STATE_MAX_AGE_SECONDS = read("HFOS_STATE_MAX_AGE_SECONDS")


def _check_orchestration() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from analytics.orchestration.config import ConfigError, orchestration_config

    try:
        orchestration_config(globals())
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


_check_orchestration()
# --- notifications (analytics/notifications) ---
# Channels from the environment: NOTIFY_CHANNELS="name=NOTIFY_URL_<X>[:min_severity],..." (each variable
# named NOTIFY_URL_<something> holds an Apprise URL; no other variable can be read by a channel)
# (more can be added in the admin, stored encrypted with FIELD_ENCRYPTION_KEY, or a key derived
# from SECRET_KEY when it is empty).
NOTIFY_CHANNELS = read("NOTIFY_CHANNELS")
NOTIFY_MIN_SEVERITY = read("NOTIFY_MIN_SEVERITY")
FIELD_ENCRYPTION_KEY = read("FIELD_ENCRYPTION_KEY")
VAR_DIR = VAR_DIR

from .celery import *  # noqa: E402,F401,F403
from .channels import *  # noqa: E402,F401,F403
from .logging import *  # noqa: E402,F401,F403
