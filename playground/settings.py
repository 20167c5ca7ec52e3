"""The one settings module. Everything comes from the environment, with safe embedded defaults.

Embedded default (no variables set): SQLite under PLAYGROUND_DATA_DIR, an in-process channel
layer, generation run on the web server's own event loop. Production: set DATABASE_URL
(PostgreSQL) and REDIS_URL, and the app uses PostgreSQL, the Redis channel layer and cache,
and Celery workers for generation. See README.md, "Configuration".
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_money(name: str) -> "Decimal | None":
    """Dollars (a Decimal) from the environment; unset or empty means none."""
    from decimal import Decimal, InvalidOperation

    raw = (os.environ.get(name) or "").strip().lstrip("$")
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be an amount in dollars, like 5 or 0.50; got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name} must be zero or more dollars; got {raw!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("PLAYGROUND_DATA_DIR", BASE_DIR / "var"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
# Production is "a real database and Redis were configured"; it turns off every
# convenience default below that would be unsafe on a shared deployment.
PRODUCTION = bool(DATABASE_URL and REDIS_URL)


def _local_secret(filename: str, make) -> str:
    """A secret generated once and kept in the data dir: embedded mode only.

    Production must pass secrets in the environment; a generated file there would differ
    between web and worker machines and silently break decryption.
    """
    if PRODUCTION:
        raise ImproperlyConfigured(f"set the environment variable for {filename} in production")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _local_secret(
    "django_secret_key", lambda: secrets.token_urlsafe(50)
)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "axes",  # failed sign-in lockouts (accounts/throttle.py)
    "playground.accounts",
    "playground.providers",
    "playground.chat",
    "playground.lab",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a sign-in that axes flagged as locked out into the 429 lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "playground.urls"
ASGI_APPLICATION = "playground.asgi.application"

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

def _postgres(url: str) -> dict:
    """PostgreSQL through psycopg's connection pool.

    Persistent per-thread connections (CONN_MAX_AGE) do not suit ASGI: sync views run on
    changing threads, each keeping its own connection, until the server's max_connections
    is exhausted under load. A bounded pool per process is shared by all its threads.
    """
    from psycopg_pool import ConnectionPool

    config = dj_database_url.parse(url, conn_max_age=0)
    config.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("PLAYGROUND_DB_POOL_MIN", 2),
        # A web process may hold one per HTTP request in flight (PLAYGROUND_HTTP_CONCURRENCY),
        # one per event-loop DB thread (PLAYGROUND_JOB_DB_THREADS: turn-end renders) and one
        # for channels' thread: 16 + 8 + 1 by default. A call past the limit waits (10 s).
        "max_size": env_int("PLAYGROUND_DB_POOL_MAX", 25),
        "timeout": 10,
        # Hand out only live connections: after a database restart the pool's old ones are dead.
        "check": ConnectionPool.check_connection,
    }
    # Prepared statements. Django sends every query as text with its values inlined, so
    # PostgreSQL parses and plans each one again: with 200 replies starting at once that
    # was a third of its CPU (bench/README.md, session 4: a send's statements cost ~4 ms of
    # server CPU, prepared ~2 ms). With server-side binding, psycopg prepares a statement
    # on its second use on a connection (threshold 1; never the first, so a statement run
    # once, such as a migration's, is never prepared), and the pool keeps connections, so
    # a warm process reuses its plans. -1 turns it off, as needed behind PgBouncer in
    # transaction mode older than 1.22 or without `max_prepared_statements`.
    threshold = env_int("PLAYGROUND_DB_PREPARE_THRESHOLD", 1)
    if threshold >= 0:
        config["OPTIONS"]["server_side_binding"] = True
        config["OPTIONS"]["prepare_threshold"] = max(threshold, 1)
    return config


DATABASES = {
    "default": (_postgres(DATABASE_URL) if DATABASE_URL.startswith("postgres") else dj_database_url.parse(DATABASE_URL))
    if DATABASE_URL
    else {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        # WAL + a busy timeout let the streaming writer and page readers overlap.
        "OPTIONS": {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The channel layer carries every streaming delta from the workers to the web servers.
# "pubsub" (default): one Redis PUBLISH per group send and one SUBSCRIBE connection per
# process; nothing is queued for a tab that is not connected, which suits deltas (a joining
# tab reads the live text instead), and at most 1,000 events for a tab that stops reading
# (events/layer.py BoundedPubSubChannelLayer). "core": channels_redis's list-backed layer, which
# costs about seven Redis commands and a Lua script per send (bench/README.md has figures).
PLAYGROUND_CHANNEL_LAYER = os.environ.get("PLAYGROUND_CHANNEL_LAYER", "pubsub")
_CHANNEL_LAYER_BACKENDS = {
    "pubsub": ("playground.events.layer.BoundedPubSubChannelLayer", {}),
    "core": ("channels_redis.core.RedisChannelLayer", {"capacity": 1000, "expiry": 60}),
}
if PLAYGROUND_CHANNEL_LAYER not in _CHANNEL_LAYER_BACKENDS:
    raise ImproperlyConfigured("PLAYGROUND_CHANNEL_LAYER must be 'pubsub' or 'core'")

if REDIS_URL:
    _backend, _options = _CHANNEL_LAYER_BACKENDS[PLAYGROUND_CHANNEL_LAYER]
    CHANNEL_LAYERS = {"default": {"BACKEND": _backend, "CONFIG": {"hosts": [REDIS_URL], **_options}}}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pcp",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# How a generation job is started: "celery" (workers, production) or "inprocess" (the web
# server's own event loop, embedded mode). The generation code is the same either way.
PLAYGROUND_GENERATION = os.environ.get("PLAYGROUND_GENERATION", "celery" if REDIS_URL else "inprocess")
if PLAYGROUND_GENERATION not in {"celery", "inprocess"}:
    raise ImproperlyConfigured("PLAYGROUND_GENERATION must be 'celery' or 'inprocess'")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "memory://")
# Results are never read; the backend only counts a fan-out chord's finished replies
# so its join callback runs once after the last one (Redis: native chord counters).
CELERY_RESULT_BACKEND = REDIS_URL or None
# One result-backend object (and Redis pool) per process, not per thread: every web request
# runs its sync view on a fresh thread, and building a backend there was a third of a send's
# Celery publish (bench/README.md). redis-py's client and pool are thread-safe.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Email carries password-reset links (accounts/lifecycle_views.py). With EMAIL_HOST set it
# goes out by SMTP; embedded without it, the email (link included) is printed to the server's
# console, where the person running `make run` reads it; in production without it email is
# off (accounts/mail.py: a console there would put live reset links in the logs) and the
# reset page says so. Django 6.1's MAILERS; the EMAIL_* names are only environment variables.
_smtp_host = os.environ.get("EMAIL_HOST", "")
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": _smtp_host,
            "port": env_int("EMAIL_PORT", 587),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", True),
            "timeout": 10,
        },
    }
    if _smtp_host
    else {"BACKEND": "playground.accounts.mail.EmailOff" if PRODUCTION else "django.core.mail.backends.console.EmailBackend"}
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "webmaster@localhost")
# How long a reset link works (it also stops working once used: the password it was made for changed).
PASSWORD_RESET_TIMEOUT = env_int("PLAYGROUND_PASSWORD_RESET_SECONDS", 3600)

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("PLAYGROUND_TIME_ZONE", "UTC")  # where budget days and months start
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
# Embedded: serve straight from the source folders, so `make run` needs no build step.
# Production: collectstatic (done in the image) writes hashed, compressed files that can be
# cached forever.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG or not PRODUCTION  # embedded is local: pick up edited files
if PRODUCTION:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

# Django's database sessions, their per-request read compiled once (playground/accounts/sessions.py).
SESSION_ENGINE = "playground.accounts.sessions"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Secure cookies and HSTS whenever the deployment says it is behind HTTPS.
HTTPS = env_bool("PLAYGROUND_HTTPS", PRODUCTION)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
# Only our own scripts and styles; htmx runs under it because it is served from /static/
# and we disable its inline-style indicator injection (htmx.config.includeIndicatorStyles)
# and its settling of style attributes (attributesToSettle without "style", base.html): a
# textarea the user resized has one, and htmx copied it onto the form swapped in for it.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
MIDDLEWARE.insert(1, "django.middleware.csp.ContentSecurityPolicyMiddleware")

# --- The playground's own settings -------------------------------------------------------

# Server secrets that encrypt users' API keys: comma-separated Fernet keys, the first
# encrypts, all decrypt (rotate with `manage.py rotate_key_secrets`).
PLAYGROUND_KEY_SECRETS = env_list("PLAYGROUND_KEY_SECRETS", "") or [
    _local_secret("key_secrets", lambda: Fernet.generate_key().decode())
]
# Whether anyone who reaches the site may create an account (operators of a private
# deployment turn this off and create users in the admin).
PLAYGROUND_SIGNUP_OPEN = env_bool("PLAYGROUND_SIGNUP_OPEN", True)
# Accounts one client address may create an hour (0: no limit); admin invitations
# (accounts.Invitation, /signup/?invite=...) are not counted, and work while sign-up is closed.
PLAYGROUND_SIGNUPS_PER_HOUR = env_int("PLAYGROUND_SIGNUPS_PER_HOUR", 5)
PLAYGROUND_INVITE_DAYS = env_int("PLAYGROUND_INVITE_DAYS", 7)  # a new invitation's default lifetime
# Failed sign-ins (django-axes, accounts/throttle.py): after this many failures for one
# account, or from one client address, that account / address is refused with a 429 for
# PLAYGROUND_LOGIN_LOCKOUT_MINUTES; each attempt during the lockout starts the wait again.
# 0 turns it off. Counters live in the cache (Redis in production), not in tables.
PLAYGROUND_LOGIN_FAILURE_LIMIT = env_int("PLAYGROUND_LOGIN_FAILURE_LIMIT", 5)
PLAYGROUND_LOGIN_LOCKOUT_MINUTES = max(1, env_int("PLAYGROUND_LOGIN_LOCKOUT_MINUTES", 15))
# Reverse proxies in front of the app that append to X-Forwarded-For: the client address is
# the entry this many places from the right (0: the connection's own address). Production
# (docker/compose.yaml) serves behind one proxy; uvicorn's own pick there is the leftmost
# entry, which clients can forge, so the app reads the header itself (throttle.client_ip).
PLAYGROUND_TRUSTED_PROXIES = env_int("PLAYGROUND_TRUSTED_PROXIES", 1 if PRODUCTION else 0)
AXES_ENABLED = PLAYGROUND_LOGIN_FAILURE_LIMIT > 0
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = max(1, PLAYGROUND_LOGIN_FAILURE_LIMIT)
AXES_COOLOFF_TIME = timedelta(minutes=PLAYGROUND_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own, not the pair
AXES_CLIENT_IP_CALLABLE = "playground.accounts.throttle.client_ip"
AXES_LOCKOUT_CALLABLE = "playground.accounts.throttle.lockout_response"
AXES_ENABLE_ADMIN = False  # its admin pages list database records; the cache handler keeps none
AUTHENTICATION_BACKENDS = [
    "playground.accounts.throttle.LoginThrottleBackend",  # first: refuses locked-out sign-ins
    "django.contrib.auth.backends.ModelBackend",
]
if not REDIS_URL:
    # axes warns that a local-memory cache is per process; embedded mode is one process.
    SILENCED_SYSTEM_CHECKS = ["axes.W001"]
# Operator-set maximum age of a stored user key in days (0 = keys do not expire).
PLAYGROUND_KEY_MAX_AGE_DAYS = env_int("PLAYGROUND_KEY_MAX_AGE_DAYS", 0)
# Secret for keyed hashes sent upstream (safety_identifier); separate from SECRET_KEY so
# rotating one does not change the other.
PLAYGROUND_HASH_SECRET = os.environ.get("PLAYGROUND_HASH_SECRET") or SECRET_KEY

# Operator-configured providers. OpenAI is always present; PLAYGROUND_PROVIDERS adds
# OpenAI-compatible ones as a JSON list of {"name", "base_url", "api", "needs_key"}
# (optional: "label", "simulator", "cache_rules", "models").
PLAYGROUND_PROVIDERS = json.loads(os.environ.get("PLAYGROUND_PROVIDERS", "") or "[]")
# Convenience for newcomers: the URL of a running OpenAI-wire simulator adds it as a provider.
PLAYGROUND_SIMULATOR_URL = os.environ.get("PLAYGROUND_SIMULATOR_URL", "")
PLAYGROUND_OPENAI_BASE_URL = os.environ.get("PLAYGROUND_OPENAI_BASE_URL", "https://api.openai.com/v1")

# prompt_cache_key namespace; by default derived from this deployment's secret so two
# deployments never share one.
PLAYGROUND_CACHE_NAMESPACE = os.environ.get("PLAYGROUND_CACHE_NAMESPACE", "")
PLAYGROUND_CACHE_BUCKETS = env_int("PLAYGROUND_CACHE_BUCKETS", 16)

# Upstream timeouts (seconds) and limits.
PLAYGROUND_CONNECT_TIMEOUT = float(os.environ.get("PLAYGROUND_CONNECT_TIMEOUT", "10"))
PLAYGROUND_READ_TIMEOUT = float(os.environ.get("PLAYGROUND_READ_TIMEOUT", "60"))
# The key check runs while the user waits on the form: one attempt, short timeout.
PLAYGROUND_KEY_CHECK_TIMEOUT = float(os.environ.get("PLAYGROUND_KEY_CHECK_TIMEOUT", "10"))
PLAYGROUND_MAX_MESSAGE_CHARS = env_int("PLAYGROUND_MAX_MESSAGE_CHARS", 100_000)
PLAYGROUND_MAX_SYSTEM_PROMPT_CHARS = env_int("PLAYGROUND_MAX_SYSTEM_PROMPT_CHARS", 200_000)
PLAYGROUND_MAX_FANOUT = env_int("PLAYGROUND_MAX_FANOUT", 8)
# Messages a chat page shows at first, and loads per "Show earlier messages" (a branch can be 10,000 deep).
PLAYGROUND_PAGE_MESSAGES = max(1, env_int("PLAYGROUND_PAGE_MESSAGES", 100))
# Per-user limits: requests started per minute, and replies running at once.
PLAYGROUND_USER_RPM = env_int("PLAYGROUND_USER_RPM", 30)
PLAYGROUND_USER_CONCURRENCY = env_int("PLAYGROUND_USER_CONCURRENCY", 8)
# Spending caps per user and provider key, in dollars (chat/budgets.py). The default applies
# where a user set no cap of their own; the ceiling is the most a user may set (and caps the
# default too). Unset: no cap. Days and months run in TIME_ZONE.
PLAYGROUND_BUDGET_DAILY_DEFAULT = env_money("PLAYGROUND_BUDGET_DAILY_DEFAULT")
PLAYGROUND_BUDGET_MONTHLY_DEFAULT = env_money("PLAYGROUND_BUDGET_MONTHLY_DEFAULT")
PLAYGROUND_BUDGET_DAILY_CEILING = env_money("PLAYGROUND_BUDGET_DAILY_CEILING")
PLAYGROUND_BUDGET_MONTHLY_CEILING = env_money("PLAYGROUND_BUDGET_MONTHLY_CEILING")
# A send's worst case prices its output at the session's max output tokens; a session that
# sets none is assumed to produce at most this many.
PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS = env_int("PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS", 4096)
# A streaming turn whose worker has not written for this long is marked failed.
PLAYGROUND_STALE_STREAM_SECONDS = env_int("PLAYGROUND_STALE_STREAM_SECONDS", 90)
# How often the sweeper looks for them (Celery beat in production, the server's loop embedded).
PLAYGROUND_SWEEP_SECONDS = float(os.environ.get("PLAYGROUND_SWEEP_SECONDS", "30"))
# A deleted session: the toast offers Undo for this long; the sweeper removes it for good
# (its spend carried into DeletedSpend) once it has been deleted for PURGE seconds.
PLAYGROUND_SESSION_UNDO_SECONDS = env_int("PLAYGROUND_SESSION_UNDO_SECONDS", 10)
PLAYGROUND_SESSION_PURGE_SECONDS = env_int("PLAYGROUND_SESSION_PURGE_SECONDS", 300)
# How often deltas are sent to browsers (coalesced) and partial text saved.
# HTTP requests one web process runs at once; more wait their turn (playground/http.py).
PLAYGROUND_HTTP_CONCURRENCY = env_int("PLAYGROUND_HTTP_CONCURRENCY", 16)
PLAYGROUND_DELTA_INTERVAL = float(os.environ.get("PLAYGROUND_DELTA_INTERVAL", "0.05"))
PLAYGROUND_SAVE_INTERVAL = float(os.environ.get("PLAYGROUND_SAVE_INTERVAL", "1.0"))
# The live cost panel's pushes per second per generation loop, at most (chat/checkpoints.py):
# below it every session with a streaming reply is pushed once a save interval, above it each
# in turn, longest waiting first. 0: no cap.
PLAYGROUND_PROGRESS_PER_SECOND = float(os.environ.get("PLAYGROUND_PROGRESS_PER_SECOND", "50"))
# Threads per process for database calls made from an event loop (chat/aio.py `db`): the
# generation loop's, and the WebSocket consumers' turn-end renders. 0: channels' one
# database thread (embedded: SQLite has one writer anyway). Keep it under the pool's size.
PLAYGROUND_JOB_DB_THREADS = env_int("PLAYGROUND_JOB_DB_THREADS", 8 if PLAYGROUND_GENERATION == "celery" else 0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("PLAYGROUND_LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs every request line; keep it quiet (it never logs headers, but a
        # provider URL with a query string could carry something we do not want).
        "httpx": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        # Scanners send wrong Host headers all day; a 400 is answer enough.
        "django.security.DisallowedHost": {"handlers": ["null"], "propagate": False},
    },
}

# Production sweeps stale turns from Celery beat (docker/compose.yaml runs it).
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-turns": {"task": "chat.sweep_stale", "schedule": PLAYGROUND_SWEEP_SECONDS},
    "purge-deleted-sessions": {"task": "chat.purge_deleted", "schedule": PLAYGROUND_SWEEP_SECONDS},
}
