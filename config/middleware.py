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

from core import errors
from core.api_errors import error_body, openai_error_response

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
    if request.path.startswith(OPENAI_PREFIX):
        response = openai_error_response(errors.ServiceUnavailable(BUSY_MESSAGE))
    elif request.path.startswith("/api/") or "application/json" in accept or "text/event-stream" in accept:
        response = JsonResponse(error_body(errors.ServiceUnavailable(BUSY_MESSAGE)), status=503)
    else:
        response = HttpResponse(BUSY_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


NUL = "\x00"
# django-ninja's routes read a JSON body whatever the request's declared type, multipart included.
JSON_ANYWAY_PREFIXES = ("/api/chat/", "/api/v1/", "/api/ml/", "/api/whoami")
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
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if content_type == "multipart/form-data" and not request.path.startswith(JSON_ANYWAY_PREFIXES):
        # Uploads are parsed by the views, after their size checks; the fields they read refuse NUL themselves.
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None  # refused by whoever reads it, as without this check
    if not body:
        return None
    if content_type == "application/x-www-form-urlencoded":
        for name, values in request.POST.lists():
            if NUL in name or any(NUL in value for value in values):
                return f"the form field {name.replace(NUL, '')!r}"
        return None
    # Any other body is read as JSON if it is JSON, whatever its declared type: django-ninja parses every body
    # as JSON (text/plain, none at all), so the declared type cannot be trusted to skip it.
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # not JSON: refused by whoever parses it (binary uploads hold NUL bytes legitimately)
    return "the JSON body" if any(NUL in text for text in _strings(data)) else None


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


# Every technical page of Django's (404, 500, CSRF failure, the DEBUG 400 and 403) carries this tag; no page of
# the site does.
TECHNICAL_PAGE_MARK = b'<meta name="robots" content="NONE,NOARCHIVE">'
# The site's own page for each error status Django may answer with one of its technical pages under DEBUG.
SITE_PAGES = {400: "400.html", 403: "403.html", 404: "404.html", 500: "500.html"}
API_ERRORS: dict[int, errors.DomainError] = {
    400: errors.BadRequest(),
    403: errors.AccessDenied(),
    404: errors.ObjectNotFound("No such address."),
    500: errors.ServerError(),
}


class SitePagesMiddleware:
    """The site's own error pages in every mode. Under DEBUG (as `make run` serves the demo) Django answers a bad
    request, a refusal, a missing page or a crash with its technical pages instead, which show settings and
    tracebacks to whoever asks; the traceback is in the log either way. Under /api/ an HTML error page (an
    address no route matches, a bad Host header) becomes the APIs' JSON error, in OpenAI's shape under /api/v1/."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        status = response.status_code
        if status not in SITE_PAGES or getattr(response, "site_page", False) or response.streaming:
            return response
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        if request.path.startswith("/api/"):
            error = API_ERRORS[status]
            if request.path.startswith(OPENAI_PREFIX):
                return openai_error_response(error, status=status)
            return JsonResponse(error_body(error), status=status)
        if not settings.DEBUG or TECHNICAL_PAGE_MARK not in response.content:
            return response  # a page of the site's own, a view's page that says more than the status
        if status == 500:
            page = HttpResponse(loader.get_template("500.html").render(), status=500)
        else:
            page = render(request, SITE_PAGES[status], status=status)
        page.site_page = True  # type: ignore[attr-defined]
        return page
