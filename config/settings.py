"""The single settings module. Every deployment knob is an environment variable (see README)."""

import os
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_limit(name, default):
    """A money limit: a decimal, or `none` for no limit; unset or empty: `default`."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    return None if value.lower() == "none" else Decimal(value)


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")
# A checkout's own settings, written by `make run` (git- and docker-ignored): after it, any
# `manage.py <command>` in the checkout runs with the same development settings. Variables already
# in the environment win; the test suite never reads it; a production deployment has none, so it
# still refuses to start without SECRET_KEY. ENV_FILE names another file, or "" for none.
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and not TESTING:
    load_dotenv(ENV_FILE, override=False)

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY") or os.environ.get("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if DEBUG or TESTING:
        # Development only: a fixed key is fine where nothing real is signed.
        SECRET_KEY = "dev-insecure-secret-key-change-me-in-production-0123456789"
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
            "(for a local run, DEBUG=true uses a development key)."
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver" if DEBUG or TESTING else "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_yasg",
    "axes",
    "csp",
    "core",
    "accounts",
    "wallet",
    "plans",
    "purchases",
    "payments",
    "demo",
]

MIDDLEWARE = [
    "core.metrics.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.RequestBodyLimitMiddleware",
    "core.middleware.RejectNulBytesMiddleware",
    "core.middleware.JsonContentTypeOnEmptyResponses",
    "core.middleware.ApiNotFoundAsJson",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # The session, user and message machinery only where a browser keeps a session
    # (SESSION_PATHS): the API authenticates each request by its Bearer token (core/middleware.py).
    "core.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "core.middleware.AuthenticationMiddleware",
    "core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: turns a login that the lockout refused into its 429 (accounts/lockout.py).
    "axes.middleware.AxesMiddleware",
]

# Paths served to a browser with a session cookie: the Django admin and the API documentation (staff
# only in production). Everything else is the API: Bearer tokens, no session.
SESSION_PATHS = ("/admin/", "/swagger", "/redoc/")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database -------------------------------------------------------------
# SQLite file in the project folder by default, so a first run needs nothing installed.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
DB_LOCK_TIMEOUT_MS = env_int("DB_LOCK_TIMEOUT_MS", 5000)
DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 30000)
# PostgreSQL: the hot statements are planned once per connection (core.precompiled.execute). Off behind a
# pooler that shares server connections between clients (PgBouncer in transaction mode).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has one writer. IMMEDIATE takes the write lock at BEGIN, so two money
    # requests queue for up to `timeout` seconds instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_TIMEOUT_SECONDS", 20),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A request that waits too long on a locked wallet, or runs away, is cut off and answered 503.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c lock_timeout={DB_LOCK_TIMEOUT_MS} -c statement_timeout={DB_STATEMENT_TIMEOUT_MS}"
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttles, OTP rate limits) ------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Password logins (the API's email login and /admin/login/) pass the lockout first (django-axes).
# The Django admin's login takes a username or an email (README leads with the emails).
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.LockoutBackend",
    "accounts.lockout.EmailBackend",
    "accounts.backends.UsernameOrEmailBackend",
]
# Per account (accounts/lockout.py): AXES_FAILURE_LIMIT wrong passwords with no pause of the cool-off
# between them lock the account's password login for the cool-off (from the last failure); an admin
# lifts it earlier by deleting the account's row under "Axes: Access attempts" in the Django admin.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 30))
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes.W006 asks for a lock per address as well. Deliberately not: many clients share one address (a
# carrier's NAT, an office), and one guesser there would lock every one of them out. Per-address
# guessing is bounded by the login throttle (THROTTLE_LOGIN); this lock bounds guessing per account.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_USERNAME_CALLABLE = "accounts.lockout.account_key"
AXES_CLIENT_IP_CALLABLE = "core.net.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# A refused try while locked does not push the end of the lock further out.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Failures are kept (Access attempts); successful logins are not logged row by row.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Kolkata")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production: DEBUG off) -------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
if not DEBUG:
    # Off under pytest: the test client speaks plain HTTP and would get a 301 to https on every request.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not TESTING)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Request bodies: larger than this is 413 `request_too_large` (core/middleware.py), also for Django's
# own form parsing (the admin); JSON nested deeper than JSON_MAX_DEPTH is 400 `parse_error`.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32)
# Proxies in front of the app that append the client's address to X-Forwarded-For (core/net.py). 0: the
# header is ignored and the socket's peer is the client, so a header cannot lift a per-address limit.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more.")

# --- REST framework ---------------------------------------------------------
REST_FRAMEWORK = {
    # simplejwt's, plus the token_version check that makes logout and revocation immediate.
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.tokens.VersionedJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "core.filters.StrictOrderingFilter",
    ],
    # Keyed on core.net.client_ip: no proxy header is trusted unless TRUSTED_PROXY_COUNT says so.
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.ScopedRateThrottle"],
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "otp": os.environ.get("THROTTLE_OTP", "10/min"),
        "login": os.environ.get("THROTTLE_LOGIN", "10/min"),
        "signup": os.environ.get("THROTTLE_SIGNUP", "10/min"),
        "token": os.environ.get("THROTTLE_TOKEN", "30/min"),
        # Per signed-in user, on every money-moving POST (wallet credit, debit, transfer, admin funding,
        # purchases). bench/run.py raises it: its few users send hundreds of requests a second.
        "money": os.environ.get("THROTTLE_MONEY", "120/min"),
    },
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "COERCE_DECIMAL_TO_STRING": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
MAX_PAGE_SIZE = env_int("MAX_PAGE_SIZE", 100)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_TOKEN_LIFETIME", 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_REFRESH_TOKEN_LIFETIME", 1440)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "TOKEN_REFRESH_SERIALIZER": "accounts.tokens.VersionedTokenRefreshSerializer",
}

SWAGGER_SETTINGS = {
    "SECURITY_DEFINITIONS": {
        "Bearer": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "JWT access token: `Bearer <access>` (get one from a login endpoint).",
        }
    },
    "USE_SESSION_AUTH": False,
    "PERSIST_AUTH": True,
    "DEFAULT_AUTO_SCHEMA_CLASS": "core.schema.AutoSchema",
    "DEFAULT_FIELD_INSPECTORS": [
        "core.schema.ReadOnlyFieldInspector",
        "drf_yasg.inspectors.CamelCaseJSONFilter",
        "drf_yasg.inspectors.RecursiveFieldInspector",
        "drf_yasg.inspectors.ReferencingSerializerInspector",
        "drf_yasg.inspectors.ChoiceFieldInspector",
        "drf_yasg.inspectors.FileFieldInspector",
        "drf_yasg.inspectors.DictFieldInspector",
        "drf_yasg.inspectors.JSONFieldInspector",
        "drf_yasg.inspectors.HiddenFieldInspector",
        "drf_yasg.inspectors.RelatedFieldInspector",
        "drf_yasg.inspectors.SerializerMethodFieldInspector",
        "drf_yasg.inspectors.SimpleFieldInspector",
        "drf_yasg.inspectors.StringDefaultFieldInspector",
    ],
    "DEFAULT_INFO": "config.urls.API_INFO",
    # JSON first: /swagger.json answers JSON to any Accept (drf-yasg's default order serves YAML to */*).
    "DEFAULT_SPEC_RENDERERS": [
        "drf_yasg.renderers.SwaggerJSONRenderer",
        "drf_yasg.renderers.SwaggerYAMLRenderer",
        "drf_yasg.renderers.OpenAPIRenderer",
    ],
}

# --- API documentation and Content-Security-Policy -------------------------
# /swagger/, /redoc/ and /swagger.json: public with DEBUG; otherwise only for staff signed in to the
# Django admin (anyone else is sent to its login page), unless API_DOCS_PUBLIC=true.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", DEBUG)

# django-csp on every answer. Everything from this origin only: no inline or eval'd script anywhere
# (the admin, Swagger UI and ReDoc load their scripts from /static/). The documentation pages get
# what their libraries need on top (core/views.py, DOCS_CSP_UPDATE): inline styles (ReDoc's
# styled-components, Swagger UI's style attributes), data: images and fonts, ReDoc's blob: worker.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        **({"report-uri": os.environ["CSP_REPORT_URI"]} if os.environ.get("CSP_REPORT_URI") else {}),
    }
}

# --- Phone numbers and OTP ------------------------------------------------
PHONE_DEFAULT_REGION = os.environ.get("PHONE_DEFAULT_REGION", "IN")
OTP_LENGTH = env_int("OTP_LENGTH", 6)
OTP_EXPIRY_MINUTES = env_int("OTP_EXPIRY_MINUTES", 1)
OTP_EXPOSE_IN_RESPONSE = env_bool("OTP_EXPOSE_IN_RESPONSE", DEBUG)
OTP_MAX_ATTEMPTS = env_int("OTP_MAX_ATTEMPTS", 5)
# Guessing limits (accounts/otp.py, README "OTP guessing"): at most BUDGET + GUARDED_CODES tries are
# checked per phone per 24-hour window, 45 by default: a 6-digit code is guessed with chance 4.5e-5.
OTP_DAILY_GUESS_BUDGET = env_int("OTP_DAILY_GUESS_BUDGET", 20)
OTP_GUARDED_CODES_PER_DAY = env_int("OTP_GUARDED_CODES_PER_DAY", 25)
OTP_GUARDED_CODES_PER_ADDRESS = env_int("OTP_GUARDED_CODES_PER_ADDRESS", 3)
OTP_ADDRESS_FREE_FAILURES = env_int("OTP_ADDRESS_FREE_FAILURES", 10)
OTP_ADDRESS_BACKOFF_MAX_SECONDS = env_int("OTP_ADDRESS_BACKOFF_MAX_SECONDS", 3600)
OTP_RESEND_COOLDOWN_SECONDS = env_int("OTP_RESEND_COOLDOWN_SECONDS", 30)
OTP_MAX_PER_HOUR = env_int("OTP_MAX_PER_HOUR", 5)
SMS_BACKEND = os.environ.get("SMS_BACKEND", "accounts.sms.ConsoleSmsBackend")
SMS_HTTP_URL = os.environ.get("SMS_HTTP_URL", "")
SMS_HTTP_TOKEN = os.environ.get("SMS_HTTP_TOKEN", "")
SMS_HTTP_TIMEOUT_SECONDS = env_int("SMS_HTTP_TIMEOUT_SECONDS", 5)
# A login code's SMS is retried this many times, backing off 2, 4, 8, 16, 30 s (a code lives a minute).
SMS_MAX_RETRIES = env_int("SMS_MAX_RETRIES", 5)

# --- Wallet and recharge --------------------------------------------------
WALLET_CURRENCY = os.environ.get("WALLET_CURRENCY", "INR")
WALLET_MAX_TRANSFER_AMOUNT = Decimal(os.environ.get("WALLET_MAX_TRANSFER_AMOUNT", "100000.00"))
# Self top-up mints money from TREASURY for whoever asks: a demo convenience, off unless DEBUG is on
# (`check --deploy` warns, wallet.W001, when it is switched on with DEBUG off).
WALLET_SELF_TOPUP_ENABLED = env_bool("WALLET_SELF_TOPUP_ENABLED", DEBUG)
# Wallet limits (wallet/limits.py, README "Wallet limits"): the most a wallet may hold, load in a calendar
# month (in TIME_ZONE), and receive in one credit. A client's depend on its KYC level (India's prepaid
# payment instrument rules: minimum KYC 10,000 held and loaded a month, full KYC 2,00,000 held);
# distributors, retailers and admins keep business wallets, unlimited unless set. `none`: no limit.
WALLET_LIMITS = {
    "MIN_KYC": {
        "max_balance": env_limit("WALLET_LIMIT_MIN_KYC_MAX_BALANCE", Decimal("10000.00")),
        "monthly_load": env_limit("WALLET_LIMIT_MIN_KYC_MONTHLY_LOAD", Decimal("10000.00")),
        "per_transaction": env_limit("WALLET_LIMIT_MIN_KYC_PER_TRANSACTION", Decimal("10000.00")),
    },
    "FULL_KYC": {
        "max_balance": env_limit("WALLET_LIMIT_FULL_KYC_MAX_BALANCE", Decimal("200000.00")),
        "monthly_load": env_limit("WALLET_LIMIT_FULL_KYC_MONTHLY_LOAD", Decimal("200000.00")),
        "per_transaction": env_limit("WALLET_LIMIT_FULL_KYC_PER_TRANSACTION", Decimal("100000.00")),
    },
    "BUSINESS": {
        "max_balance": env_limit("WALLET_LIMIT_BUSINESS_MAX_BALANCE", None),
        "monthly_load": env_limit("WALLET_LIMIT_BUSINESS_MONTHLY_LOAD", None),
        "per_transaction": env_limit("WALLET_LIMIT_BUSINESS_PER_TRANSACTION", None),
    },
}
# Most lines in one bulk payout (POST /api/wallet/payouts/): one request, one transaction, one lock.
WALLET_PAYOUT_MAX_LINES = env_int("WALLET_PAYOUT_MAX_LINES", 1000)
IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24)
# A duplicate of a request still running waits this long for its answer (a money request takes
# milliseconds), then gets 409; kept short because a waiting duplicate occupies a web worker.
IDEMPOTENCY_WAIT_SECONDS = float(os.environ.get("IDEMPOTENCY_WAIT_SECONDS", "2"))
IDEMPOTENCY_LEASE_SECONDS = env_int("IDEMPOTENCY_LEASE_SECONDS", 120)
RECHARGE_GATEWAY = os.environ.get("RECHARGE_GATEWAY", "purchases.gateways.SandboxGateway")
RECHARGE_GATEWAY_LATENCY_MS = env_int("RECHARGE_GATEWAY_LATENCY_MS", 0)
RECHARGE_GATEWAY_TIMEOUT_SECONDS = env_int("RECHARGE_GATEWAY_TIMEOUT_SECONDS", 30)
# Operator callbacks (POST /api/purchases/callbacks/<gateway>/): the shared HMAC secret; several,
# comma-separated, while rotating (any verifies; the sandbox signs with the first). Empty: every
# callback is refused (401).
RECHARGE_CALLBACK_SECRET = os.environ.get("RECHARGE_CALLBACK_SECRET", "")
# Where a verified callback's news is applied (the posting or the void, under the wallets' locks):
# "worker" (a task: the request only reads the purchase, so a callback costs the web tier little while
# purchases are being accepted) or "request" (in the callback's own request: the aggregator's 200 says
# it is done, and a web tier with CPU to spare settles in parallel with the worker's sends). README,
# "Operator callbacks".
RECHARGE_CALLBACK_APPLY = os.environ.get("RECHARGE_CALLBACK_APPLY", "worker")
if RECHARGE_CALLBACK_APPLY not in ("worker", "request"):
    raise ImproperlyConfigured(f"RECHARGE_CALLBACK_APPLY is worker or request, not {RECHARGE_CALLBACK_APPLY!r}.")
# Sandbox callback mode: where the sandbox POSTs final statuses (empty: it answers synchronously,
# and PENDING purchases are settled by status checks), and how long after the recharge (with a broker;
# with none it calls back at once).
RECHARGE_SANDBOX_CALLBACK_URL = os.environ.get("RECHARGE_SANDBOX_CALLBACK_URL", "")
RECHARGE_SANDBOX_CALLBACK_DELAY_MS = env_int("RECHARGE_SANDBOX_CALLBACK_DELAY_MS", 500)
# The queue the sandbox's sender (purchases.deliver_sandbox_callbacks) goes to (empty: the default queue,
# so `make worker` runs it). A real aggregator calls back from its own machines: the benchmark names a
# queue here and runs the sender in a process of their own, off the worker it measures.
RECHARGE_SANDBOX_CALLBACK_QUEUE = os.environ.get("RECHARGE_SANDBOX_CALLBACK_QUEUE", "")
# Callback mode with a broker: beat starts the sandbox's sender (purchases.deliver_sandbox_callbacks) this
# often, and each runs this long, so that one is always sending.
RECHARGE_SANDBOX_CALLBACK_ROUND_SECONDS = 1.0
# A purchase sent this long ago whose outcome is still unknown is asked about (check_status), never
# sent again: its send must have ended (the gateway timeout) with a margin.
PURCHASE_STATUS_CHECK_AFTER_SECONDS = env_int(
    "PURCHASE_STATUS_CHECK_AFTER_SECONDS", RECHARGE_GATEWAY_TIMEOUT_SECONDS + 30
)
# An unkeyed purchase of the same amount for the same number by the same buyer within this many minutes
# of one that has not failed is refused (409 duplicate_purchase): a retry must not buy twice. 0: off.
PURCHASE_DUPLICATE_WINDOW_MINUTES = env_int("PURCHASE_DUPLICATE_WINDOW_MINUTES", 5)
# A PENDING purchase never sent this long after its acceptance lost its task (broker down, worker
# died before sending): the periodic sweep enqueues it again.
PURCHASE_RESEND_AFTER_SECONDS = env_int("PURCHASE_RESEND_AFTER_SECONDS", 30)
# The admin's "stuck" filter: PENDING for longer than this.
PURCHASE_STUCK_MINUTES = env_int("PURCHASE_STUCK_MINUTES", 10)

# --- Payments: wallet top-ups (payments/, README "How a mobile client adds money") ----------
PAYMENT_PROVIDER = os.environ.get("PAYMENT_PROVIDER", "payments.providers.SandboxPaymentProvider")
# The webhook's HMAC secret; several, comma-separated, while rotating (the first one signs the
# sandbox's webhooks). Empty: every webhook is refused. Development and tests get a fixed one.
PAYMENT_WEBHOOK_SECRETS = env_list("PAYMENT_WEBHOOK_SECRET", "dev-payment-webhook-secret" if DEBUG or TESTING else "")
PAYMENT_MIN_TOPUP_AMOUNT = Decimal(os.environ.get("PAYMENT_MIN_TOPUP_AMOUNT", "1.00"))
PAYMENT_MAX_TOPUP_AMOUNT = Decimal(os.environ.get("PAYMENT_MAX_TOPUP_AMOUNT", "100000.00"))
PAYMENT_INTENT_TTL_MINUTES = env_int("PAYMENT_INTENT_TTL_MINUTES", 30)
# A PENDING top-up whose webhook has not come after this long is asked about (beat, every
# PAYMENT_STATUS_CHECK_INTERVAL_SECONDS).
PAYMENT_STATUS_CHECK_AFTER_SECONDS = env_int("PAYMENT_STATUS_CHECK_AFTER_SECONDS", 120)
PAYMENT_STATUS_CHECK_INTERVAL_SECONDS = env_int("PAYMENT_STATUS_CHECK_INTERVAL_SECONDS", 60)
# The sandbox provider: anyone holding a payment URL can "pay" with it, so it only works where money is
# not real (DEBUG, tests) unless switched on (the benchmark does); off, its intents fail and its pages 404.
PAYMENT_SANDBOX_ENABLED = env_bool("PAYMENT_SANDBOX_ENABLED", DEBUG or TESTING)
# Where its payment pages live and where it sends its webhooks.
PAYMENT_SANDBOX_BASE_URL = os.environ.get("PAYMENT_SANDBOX_BASE_URL", "http://127.0.0.1:8000")
PAYMENT_SANDBOX_WEBHOOK_URL = os.environ.get("PAYMENT_SANDBOX_WEBHOOK_URL", "")
PAYMENT_SANDBOX_LATENCY_MS = env_int("PAYMENT_SANDBOX_LATENCY_MS", 0)
PAYMENT_SANDBOX_WEBHOOK_TIMEOUT_SECONDS = env_int("PAYMENT_SANDBOX_WEBHOOK_TIMEOUT_SECONDS", 10)
PAYMENT_SANDBOX_WEBHOOK_RETRIES = env_int("PAYMENT_SANDBOX_WEBHOOK_RETRIES", 5)

# --- Task queue (Celery: config/celery.py) -------------------------------------
# Redis (`redis://host:6379/1`) or RabbitMQ (`amqp://user:pass@host:5672//`). Empty: no broker, and
# every task runs eagerly in the process that enqueued it, right after the enqueuing commit.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# On Redis, kombu's transport with one client per channel for its commands (core/broker.py). Not for
# rediss://: kombu turns TLS on by that transport name, which a class of our own would not carry.
CELERY_BROKER_TRANSPORT = "core.broker:Transport" if CELERY_BROKER_URL.startswith("redis://") else None
# The test suite always runs tasks eagerly; its integration tests start real workers of their own.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL or TESTING
CELERY_TASK_EAGER_PROPAGATES = False  # an eager task's failure is logged, never the request's answer
CELERY_TASK_IGNORE_RESULT = True  # state lives in the database rows the tasks change
# No result backend ("disabled"): it holds nothing, so one instance serves every pool thread. Otherwise
# Celery builds one per thread, each by reading every installed package's entry points: in the busy
# hour's worker (256 threads) that was a sixth of the worker's CPU (py-spy, bench/README.md). A result
# backend configured one day must be thread-safe, or this must go.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "recharge")
# Settling what an operator called back with is the last step of a purchase already sent. Queued behind
# the busy hour's sends (one FIFO queue, each send a second on the operator), it waited for every send
# enqueued before it, and nothing became final until the sends ran out. On a queue of its own, which
# every worker consumes beside the default one (kombu takes from the two in turn), it does not.
CELERY_SETTLE_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.settle"
CELERY_TASK_QUEUES = (Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(CELERY_SETTLE_QUEUE))
CELERY_TASK_ROUTES = {"purchases.apply_operator_callback": {"queue": CELERY_SETTLE_QUEUE}}
# At-least-once: a message is acknowledged after its task ran, so a worker killed mid-task leaves it to
# be delivered again (the tasks are idempotent). Redis hands an unacknowledged message to another
# worker after the visibility timeout: it must exceed the longest task (a gateway call) and the
# longest retry countdown, or a task still running would be started twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int(
    "CELERY_VISIBILITY_TIMEOUT_SECONDS", env_int("RECHARGE_GATEWAY_TIMEOUT_SECONDS", 30) + 60
)
# Redis: how often a worker looks for messages whose worker died (past the visibility timeout) and puts
# them back. kombu's default scans only every 10th 10-second tick (100 s); every tick is one cheap
# ZRANGE on the unacknowledged index.
CELERY_RESTORE_INTERVAL_SECONDS = env_int("CELERY_RESTORE_INTERVAL_SECONDS", 10)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
    "unacked_restore_interval": CELERY_RESTORE_INTERVAL_SECONDS,
    "unacked_restore_throttle": 1,
}
# A request that enqueues while the broker is down must answer at once: the work is already committed
# and a periodic sweep enqueues it again, so publishing gives up quickly instead of holding the request.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE
# A worker runs its database work on this many dedicated threads (core.db_threads): its pool threads
# (64 by default, each waiting on an operator) never hold a connection of their own.
CELERY_WORKER_DB_CONNECTIONS = env_int("CELERY_WORKER_DB_CONNECTIONS", 4)
# `make beat`: the periodic work. Each run is safe to repeat and to overlap with another machine's
# (the sweep only enqueues idempotent fulfilments; the purge deletes expired rows), and expires if it
# waited longer than its interval in the queue, so a backlog never piles up sweeps.
PURCHASE_SWEEP_SECONDS = env_int("PURCHASE_SWEEP_SECONDS", 15)
CELERY_BEAT_SCHEDULE = {
    "settle-pending-purchases": {
        "task": "purchases.settle_pending_purchases",
        "schedule": PURCHASE_SWEEP_SECONDS,
        "options": {"expires": PURCHASE_SWEEP_SECONDS},
    },
    "purge-idempotency-keys": {
        "task": "core.purge_idempotency_keys",
        "schedule": 3600,
        "options": {"expires": 3600},
    },
    "settle-stale-top-ups": {
        "task": "payments.settle_stale_top_ups",
        "schedule": float(PAYMENT_STATUS_CHECK_INTERVAL_SECONDS),
        "options": {"expires": float(PAYMENT_STATUS_CHECK_INTERVAL_SECONDS)},
    },
}
if RECHARGE_SANDBOX_CALLBACK_URL:
    # The sandbox as a callback aggregator: its outbox is sent by a loop that beat keeps running. Rounds
    # may overlap (they claim with SKIP LOCKED), so one that waited behind other messages still runs,
    # unless it waited for five rounds.
    CELERY_BEAT_SCHEDULE["sandbox-callbacks"] = {
        "task": "purchases.deliver_sandbox_callbacks",
        "schedule": RECHARGE_SANDBOX_CALLBACK_ROUND_SECONDS,
        "options": {
            "expires": 5 * RECHARGE_SANDBOX_CALLBACK_ROUND_SECONDS,
            **({"queue": RECHARGE_SANDBOX_CALLBACK_QUEUE} if RECHARGE_SANDBOX_CALLBACK_QUEUE else {}),
        },
    }

# --- Metrics (GET /metrics, Prometheus: core/metrics.py) ------------------------------------------
# A scrape sends `Authorization: Bearer <METRICS_TOKEN>`. Unset: open with DEBUG on, 404 in production.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_COLLECTORS = ["purchases.metrics.PurchaseCollector", "wallet.metrics.HoldCollector"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # ISO 8601 with the UTC offset: a log line says when, whatever the server's zone.
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s", "datefmt": "%Y-%m-%dT%H:%M:%S%z"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
