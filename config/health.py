"""Liveness and readiness probes for load balancers, container platforms and people."""

import logging
import os
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from config.celery import ensure_file_broker_folders

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0
DATABASE_TIMEOUT_SECONDS = 3


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the broker are reachable; 503 naming the failing part otherwise."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _check_database() -> str:
    # On a connection of its own, not one from the pool or the thread: a kept connection can still work while
    # the server refuses new ones, and new ones are what the next requests and workers need.
    try:
        params = {**connection.get_connection_params(), "connect_timeout": DATABASE_TIMEOUT_SECONDS}
        with psycopg.connect(**params) as fresh, fresh.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", and its text is the reason
        logger.warning("readiness: database unreachable: %s", exc)
        return f"unreachable: {type(exc).__name__}"
    if row is None:
        return "the vector extension is not installed (run manage.py migrate)"
    return "ok"


def _check_broker() -> str:
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        folder = Path(str(options["data_folder_in"]))
        try:
            ensure_file_broker_folders(url, options)
        except OSError as exc:
            return f"unreachable: broker folder {folder} cannot be created ({exc.strerror})"
        return "ok" if os.access(folder, os.W_OK) else f"unreachable: broker folder {folder} is not writable"
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", and its text is the reason
        logger.warning("readiness: broker unreachable: %s", exc)
        return f"unreachable: {type(exc).__name__}"
    return "ok"
