"""Settings for the Django deployable, read from the environment once.

Bad values fail at start-up with ImproperlyConfigured, not later in a request.
Embedded defaults: SQLite under var/, the django-q2 ORM broker, files under var/.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from mlcore.review_strategy import DEFAULT_STRATEGY, SERVING_ROUTES, STRATEGIES

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
INSECURE_DEFAULT_KEY = "django-insecure-intentflow-development-key-do-not-deploy"

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY == INSECURE_DEFAULT_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is missing or is the development default: set SECRET_KEY to a long random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or set DEBUG=1 for local development."
        )
    SECRET_KEY = INSECURE_DEFAULT_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_q",
    "webapp.labeling",
    "webapp.training",
    "webapp.review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a parameter: a NUL in one is a 400, never a database error.
    "webapp.middleware.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Records request.user as the author of each history entry (label changes).
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webapp" / "templates"],
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

# DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test; default: a SQLite file under var/.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'intentflow.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A worker process writes progress while the web server reads: wait for the lock, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
# Large imports (CLINC150's full file is 2.5 MB) are uploaded through the admin.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# Security: everything `manage.py check --deploy` asks for when DEBUG is off.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # TLS ends at the load balancer
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# Files: uploads under var/media; model artifacts under var/artifacts, or in S3 when
# ARTIFACT_BUCKET is set (django-storages; AWS_S3_ENDPOINT_URL for an S3-compatible server).
ARTIFACT_BUCKET = env.str("ARTIFACT_BUCKET", default="")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT)}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "artifacts": (
        {"BACKEND": "storages.backends.s3.S3Storage",
         "OPTIONS": {"bucket_name": ARTIFACT_BUCKET, "endpoint_url": AWS_S3_ENDPOINT_URL, "file_overwrite": False}}
        if ARTIFACT_BUCKET else
        {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(VAR_DIR / "artifacts")}}
    ),
}

# Where "Promote to production" publishes the model: a local path or s3://bucket/key.
SERVING_MODEL_URI = env.str("SERVING_MODEL_URI", default=str(VAR_DIR / "serving" / "model.pt"))
# A candidate whose held-out accuracy is below the promoted model's by more than this is refused
# unless an ML engineer overrides it with a reason (0.005 = half a percentage point).
PROMOTION_MAX_ACCURACY_DROP = env.float("PROMOTION_MAX_ACCURACY_DROP", default=0.005)
if not 0 <= PROMOTION_MAX_ACCURACY_DROP < 1:
    raise ImproperlyConfigured(f"PROMOTION_MAX_ACCURACY_DROP must be in [0, 1), got {PROMOTION_MAX_ACCURACY_DROP}.")
# Promotion also makes an int8 copy of the ONNX export; it is served instead of fp32 only if, on the
# run's validation split and held-out set, it is at most this much less accurate (0.003 = 0.3 points)
# and agrees with fp32's top intent on at least QUANTIZED_MIN_AGREEMENT of the texts. 0 still allows
# an int8 model that loses nothing; QUANTIZE=0 skips it.
QUANTIZE = env.bool("QUANTIZE", default=True)
QUANTIZED_MAX_ACCURACY_DROP = env.float("QUANTIZED_MAX_ACCURACY_DROP", default=0.003)
QUANTIZED_MIN_AGREEMENT = env.float("QUANTIZED_MIN_AGREEMENT", default=0.99)
if not 0 <= QUANTIZED_MAX_ACCURACY_DROP < 1 or not 0 < QUANTIZED_MIN_AGREEMENT <= 1:
    raise ImproperlyConfigured("QUANTIZED_MAX_ACCURACY_DROP must be in [0, 1) and QUANTIZED_MIN_AGREEMENT in (0, 1].")

# Background jobs (django-q2). Embedded default: the ORM broker on the default database;
# production: Redis when REDIS_URL is set.
REDIS_URL = env.str("REDIS_URL", default="")
TRAINING_TIMEOUT_SECONDS = env.int("TRAINING_TIMEOUT_SECONDS", default=24 * 3600)
# A running run whose worker has not written for this long is marked failed.
TRAINING_HEARTBEAT_TIMEOUT_SECONDS = env.int("TRAINING_HEARTBEAT_TIMEOUT_SECONDS", default=600)
# Progress is written to the run row at most this often (a few writes per second at most).
TRAINING_PROGRESS_INTERVAL_SECONDS = env.float("TRAINING_PROGRESS_INTERVAL_SECONDS", default=0.5)
# CPU threads a training run uses (torch's intra-op pool).
TRAINING_THREADS = env.int("TRAINING_THREADS", default=os.cpu_count() or 1)
# How often the scheduled sweep fails runs and promotions whose worker died.
TRAINING_SWEEP_MINUTES = env.int("TRAINING_SWEEP_MINUTES", default=1)
# A promotion holds the publishing lock at most this long; a crashed worker's lock expires then.
PROMOTION_LOCK_SECONDS = env.int("PROMOTION_LOCK_SECONDS", default=900)
for _name, _minimum in (("TRAINING_TIMEOUT_SECONDS", 60), ("TRAINING_HEARTBEAT_TIMEOUT_SECONDS", 10), ("TRAINING_THREADS", 1),
                        ("TRAINING_SWEEP_MINUTES", 1), ("PROMOTION_LOCK_SECONDS", 60)):
    if globals()[_name] < _minimum:
        raise ImproperlyConfigured(f"{_name} must be at least {_minimum}, got {globals()[_name]}.")
# Two queues, each served by its own `qcluster` process: training runs (long, one at a time) on
# "<name>-training", and the short jobs (promotions, the review drain, the sweep) on "<name>", so a
# promotion never waits hours behind a training run. Start the training one with
# Q_CLUSTER_NAME=<name>-training (make demo starts both). Q_CLUSTER_PREFIX sets <name>.
# The short jobs' limit (a promotion exports and re-scores a model: minutes, not hours).
JOB_TIMEOUT_SECONDS = env.int("JOB_TIMEOUT_SECONDS", default=3600)
_Q_PREFIX = env.str("Q_CLUSTER_PREFIX", default="intentflow")
Q_CLUSTER = {
    # Processes sharing a broker and this name share the queues; it is also the tasks' signing salt.
    "name": _Q_PREFIX,
    # One worker process per cluster: one run trains at a time, the others wait as "queued".
    "workers": env.int("Q_WORKERS", default=1),
    # `timeout` is how long a worker may run one task before django-q kills it. `retry` is how long
    # the broker waits for an acknowledgement before handing the same task out again: it must
    # exceed `timeout`, or a long task would be started a second time while the first still runs.
    # `max_attempts=1` never re-runs a task that failed, and the tasks themselves only start a run
    # or a promotion that is still "queued".
    "timeout": JOB_TIMEOUT_SECONDS,
    "retry": JOB_TIMEOUT_SECONDS + 3600,
    # The training queue's cluster: a run can last for hours, so its limit is set well above the longest one.
    "ALT_CLUSTERS": {f"{_Q_PREFIX}-training": {"timeout": TRAINING_TIMEOUT_SECONDS, "retry": TRAINING_TIMEOUT_SECONDS + 3600}},
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.5,
    **({"redis": REDIS_URL} if REDIS_URL else {"orm": "default"}),
}

# The review queue. With REVIEW_SINK=sqs the serving app sends low-confidence predictions to this
# queue, and a scheduled django-q2 task moves them into the admin every REVIEW_DRAIN_MINUTES.
REVIEW_QUEUE_URL = env.str("REVIEW_QUEUE_URL", default="")
AWS_SQS_ENDPOINT_URL = env.str("AWS_SQS_ENDPOINT_URL", default="") or None
REVIEW_DRAIN_MINUTES = env.int("REVIEW_DRAIN_MINUTES", default=1)
if REVIEW_DRAIN_MINUTES < 1:
    raise ImproperlyConfigured(f"REVIEW_DRAIN_MINUTES must be at least 1, got {REVIEW_DRAIN_MINUTES}.")

# The order of the review queue, which decides what the next run learns when reviewers label only
# its first items: "confidence" (lowest confidence first: the default, the best order measured by
# bench/learning_loop.py), "balanced" (the least confident item of each predicted intent in turn)
# or "margin" (smallest gap between the top two intents first). See mlcore/review_strategy.py.
REVIEW_STRATEGY = env.str("REVIEW_STRATEGY", default=DEFAULT_STRATEGY)
if REVIEW_STRATEGY not in STRATEGIES:
    raise ImproperlyConfigured(f"REVIEW_STRATEGY must be one of {', '.join(STRATEGIES)}, got {REVIEW_STRATEGY!r}.")

# Near-duplicate grouping: pending items whose sentence embeddings (from the model that predicted
# them) have at least this cosine similarity are one decision on the labeling screen. The worker
# embeds and groups new items every REVIEW_GROUP_MINUTES. The default is the lowest similarity from
# which, on CLINC150's validation split, at least 98% of grouped pairs share an intent, over all
# queries and over those the queue would get (bench/grouping.py, BENCHMARKS.md section 12).
REVIEW_GROUP_SIMILARITY = env.float("REVIEW_GROUP_SIMILARITY", default=0.82)
if not 0.0 < REVIEW_GROUP_SIMILARITY <= 1.0:
    raise ImproperlyConfigured(f"REVIEW_GROUP_SIMILARITY must be above 0 and at most 1, got {REVIEW_GROUP_SIMILARITY}.")
REVIEW_GROUP_MINUTES = env.int("REVIEW_GROUP_MINUTES", default=1)
# How long the labeling screen keeps an item for the reviewer it showed it to.
REVIEW_LEASE_SECONDS = env.int("REVIEW_LEASE_SECONDS", default=300)
for _name in ("REVIEW_GROUP_MINUTES", "REVIEW_LEASE_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1, got {globals()[_name]}.")

# Self-training: a run is given at most this many of the most recent traffic samples (serving's
# TRAFFIC_SAMPLE_RATE) as unlabeled texts; 0 turns it off. mlcore keeps at most
# TrainConfig.pseudo_label_ratio (4) pseudo-labels per labeled training text of them.
TRAINING_UNLABELED_TEXTS = env.int("TRAINING_UNLABELED_TEXTS", default=50_000)
# Where a run takes its unlabeled texts from: a function(limit=N) returning texts. The review app's
# traffic samples; named here, so that training imports no app above it.
TRAINING_UNLABELED_TEXTS_SOURCE = "webapp.review.selectors.traffic_sample_texts"
if TRAINING_UNLABELED_TEXTS < 0:
    raise ImproperlyConfigured(f"TRAINING_UNLABELED_TEXTS must be 0 or more, got {TRAINING_UNLABELED_TEXTS}.")


def _optional_fraction(name: str) -> float | None:
    """An unset variable is None; anything else must be a number in [0, 1], as serving requires of
    it (an empty value too is refused there)."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise ImproperlyConfigured(f"{name} must be a number in [0, 1] or unset, got {raw!r}.")
    return value


# What serving sends to review, read from the variables serving reads (lambda/intentflow_serving/config.py),
# with its defaults and bounds: a run pseudo-labels only the traffic serving would answer with
# confidence under them (TrainConfig's fields of the same names, mlcore.review_strategy.ReviewRouting),
# so one deployment configuration sets both.
REVIEW_ROUTING = os.environ.get("REVIEW_ROUTING", "either")
if REVIEW_ROUTING not in SERVING_ROUTES:
    raise ImproperlyConfigured(f"REVIEW_ROUTING must be one of {', '.join(SERVING_ROUTES)}, got {REVIEW_ROUTING!r}.")
AMBIGUITY_MARGIN = _optional_fraction("AMBIGUITY_MARGIN")
CONFIDENCE_THRESHOLD = _optional_fraction("CONFIDENCE_THRESHOLD")
IN_SCOPE_THRESHOLD = _optional_fraction("IN_SCOPE_THRESHOLD")

# The labeling workspace.
MIN_EXAMPLES_PER_INTENT = env.int("MIN_EXAMPLES_PER_INTENT", default=10)
if MIN_EXAMPLES_PER_INTENT < 1:
    raise ImproperlyConfigured(f"MIN_EXAMPLES_PER_INTENT must be at least 1, got {MIN_EXAMPLES_PER_INTENT}.")

# Input limits. An import is read as a stream, but its distinct texts are held for the duplicate
# and conflict checks (measured: 350 bytes a row for 60-character texts): 1,000,000 rows need
# about 0.5 GB, within a 2 GB machine, and 200 MB holds them at 200 bytes a row (CLINC150,
# 23,700 rows, is 2.5 MB).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=200_000_000)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=1_000_000)
# One review event: a 1000-character text and a distribution over a few hundred intents fit in 64 kB.
REVIEW_MAX_BODY_BYTES = env.int("REVIEW_MAX_BODY_BYTES", default=64 * 1024)
for _limit in ("IMPORT_MAX_BYTES", "IMPORT_MAX_ROWS", "REVIEW_MAX_BODY_BYTES"):
    if globals()[_limit] < 1:
        raise ImproperlyConfigured(f"{_limit} must be at least 1, got {globals()[_limit]}.")
# Uploads go to a temporary file, never memory, and stop being stored past IMPORT_MAX_BYTES.
FILE_UPLOAD_HANDLERS = ["webapp.labeling.uploads.CappedTemporaryFileUploadHandler"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that an anonymous request gets 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["webapp.api.permissions.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "webapp.api.parsers.JSONParser",  # too deep a JSON document is a 400, not a 500
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # drf-spectacular's, with the error answers (400/401/403/404) declared on every operation.
    "DEFAULT_SCHEMA_CLASS": "webapp.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "intentflow API",
    "DESCRIPTION": "Labeled utterances, intents, training runs and the review queue.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Self-contained docs assets: no CDN is reachable from an offline deployment.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
