"""Requests that cannot get a database connection in time are told to come back, not given a server error."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout

from config import errors
from config.api_errors import error_body

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
BUSY_MESSAGE = "The service is busy: no database connection came free in time. Try again in a few seconds."


def _waited_for_a_connection(exception: Exception) -> bool:
    """True for the error the connection pool raises when every connection stayed busy past its timeout."""
    if not isinstance(exception, OperationalError):
        return False
    return isinstance(exception.__cause__, PoolTimeout)


class DatabaseBusyMiddleware:
    """Under the web server a process's requests share a bounded pool of connections (DJANGO_DB_POOL_MAX_SIZE); a
    request that waits DJANGO_DB_POOL_TIMEOUT for one gets 503 with Retry-After, JSON for API clients."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _waited_for_a_connection(exception):
            return None
        logger.warning("503 for %s %s: %s", request.method, request.path, exception)
        response: HttpResponse
        accept = request.headers.get("Accept", "")
        # The chat page's script asks for an event stream and shows a JSON error's detail in place.
        if request.path.startswith("/api/") or "application/json" in accept or "text/event-stream" in accept:
            response = JsonResponse(error_body(errors.ServiceUnavailable(BUSY_MESSAGE)), status=503)
        else:
            response = HttpResponse(BUSY_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
