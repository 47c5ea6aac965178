"""Test settings: the base settings with fast password hashing and no outside calls."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production-use-0123456789abcdef")

from config.settings.base import *  # noqa: F403
from config.settings.base import env

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests that need the background worker start a real one; the rest run tasks in-process.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
# An LLM is only ever the loopback stand-in started by a test.
OPENAI_API_KEY = ""
OPENAI_BASE_URL = ""
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Tests that only need *a* vector use the fast deterministic embedder; retrieval-quality tests ask for MiniLM.
KNOWLEDGE_EMBEDDING_MODEL = env("KNOWLEDGE_TEST_EMBEDDING_MODEL", default="hashing-384")
