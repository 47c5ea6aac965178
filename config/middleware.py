"""What every request passes through before a view: texts PostgreSQL cannot store are refused, and requests that
cannot get a database connection in time are told to come back, not given a server error."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from psycopg_pool import PoolTimeout

from config import errors
from config.api_errors import error_body, openai_error_response

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
BUSY_MESSAGE = "The service is busy: no database connection came free in time. Try again in a few seconds."


def waited_for_a_connection(exception: Exception) -> bool:
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
        if not waited_for_a_connection(exception):
            return None
        return busy_response(request, exception)


def busy_response(request: HttpRequest, exception: Exception) -> HttpResponse:
    """503 with Retry-After: JSON for API clients and the chat page's script, text for the rest."""
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


NUL = "\x00"
# The OpenAI-compatible endpoints answer errors in OpenAI's shape, which the OpenAI SDKs read.
OPENAI_PREFIX = "/api/v1/"


class InvalidText(errors.InvalidInput):
    """A text holds a NUL character, which cannot be stored."""


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _where_nul(request: HttpRequest) -> str | None:
    """Where the request carries a NUL character (the path, a query parameter, a form field or a JSON text), or
    None. Multipart bodies are left to the views, which check their fields and file names themselves, so that
    a large upload is not parsed before its size is checked."""
    if NUL in request.path:
        return "the address"
    for name, values in request.GET.lists():
        if NUL in name or any(NUL in value for value in values):
            return f"the query parameter {name.replace(NUL, '')!r}"
    content_type = request.content_type or ""
    if request.method in ("GET", "HEAD", "OPTIONS") or content_type == "multipart/form-data":
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None  # refused by whoever reads it, as without this check
    if not body:
        return None
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None  # not JSON: the API answers that itself
        return "the JSON body" if any(NUL in text for text in _strings(data)) else None
    if content_type == "application/x-www-form-urlencoded":
        for name, values in request.POST.lists():
            if NUL in name or any(NUL in value for value in values):
                return f"the form field {name.replace(NUL, '')!r}"
    return None


class RefuseNulMiddleware:
    """PostgreSQL's text cannot hold NUL (U+0000): a request that carries one anywhere it could reach the database
    is refused here, in one place for every page and API, with 422 (400 in OpenAI's error shape under /api/v1/)
    instead of a database error deep in a view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = _where_nul(request)
        if where is None:
            return self.get_response(request)
        error = InvalidText(
            f"{where[0].upper()}{where[1:]} holds a NUL character (U+0000), which is not allowed."
        )
        if request.path.startswith(OPENAI_PREFIX):
            return openai_error_response(error)
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            return JsonResponse(error_body(error), status=422)
        return HttpResponse(error.message, status=422, content_type="text/plain; charset=utf-8")


# Every script and style of the site's own pages is a file under /static/, so they need no 'unsafe-inline'.
# Django admin and its widgets (and the admin pages of this project) still set style attributes, so /admin/
# allows inline styles, never inline scripts. Images may be data: URIs (the digit the model read) and blobs
# (the drawing canvas).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
ADMIN_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
ADMIN_PREFIX = "/admin/"


class ContentSecurityPolicyMiddleware:
    """Sets Content-Security-Policy on every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            policy = (
                ADMIN_CONTENT_SECURITY_POLICY
                if request.path.startswith(ADMIN_PREFIX)
                else CONTENT_SECURITY_POLICY
            )
            response["Content-Security-Policy"] = policy
        return response


class SitePagesMiddleware:
    """The site's own "not found" and "something went wrong" pages in every mode. Under DEBUG (as `make run`
    serves the demo) Django answers with its technical pages instead, which show settings and tracebacks to
    whoever asks; the traceback is in the log either way. Under /api/ an HTML error page becomes the APIs' JSON
    error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code not in (404, 500) or getattr(response, "site_page", False):
            return response
        if not response.get("Content-Type", "").startswith("text/html") or response.streaming:
            return response
        if request.path.startswith("/api/"):
            # An address under /api/ that no route matches (or a crash outside the APIs' own handlers): the
            # APIs answer in JSON, whatever answered.
            body = (
                error_body(errors.ObjectNotFound("No such address."))
                if response.status_code == 404
                else {
                    "detail": "Something went wrong on the server. Please try again.",
                    "code": "ServerError",
                }
            )
            return JsonResponse(body, status=response.status_code)
        if not settings.DEBUG:
            return response
        if response.status_code == 404:
            page = render(request, "404.html", status=404)
        else:
            page = HttpResponse(loader.get_template("500.html").render(), status=500)
        page.site_page = True  # type: ignore[attr-defined]
        return page
