"""Domain errors to HTTP responses: the one mapping for DRF and the one for django-ninja."""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core import errors

STATUS_BY_ERROR: tuple[tuple[type[errors.DomainError], int], ...] = (
    (errors.ObjectNotFound, 404),
    (errors.AccessDenied, 403),
    (errors.InvalidInput, 422),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.RateLimited, 429),
    (errors.ServiceUnavailable, 503),
    (errors.ServerError, 500),
)


def status_for(exc: errors.DomainError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(exc, error_class):
            return status
    return 400


def error_body(exc: errors.DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": exc.message, "code": type(exc).__name__}
    if exc.details:
        body["details"] = exc.details
    return body


OPENAI_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}


def openai_status_for(exc: errors.DomainError) -> int:
    """OpenAI clients expect 400 for a request they got wrong, where the other APIs say 422."""
    status = status_for(exc)
    return 400 if status == 422 else status


def openai_error_body(exc: errors.DomainError, *, status: int | None = None, **extra: Any) -> dict[str, Any]:
    """The error in the shape OpenAI's API gives it, which the OpenAI SDKs read their message from; `extra`
    fields (the citations of a failed answer) go beside the message."""
    status = status or openai_status_for(exc)
    kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {"message": exc.message, "type": kind, "param": None, "code": type(exc).__name__, **extra}
    }


def openai_error_response(
    exc: errors.DomainError, *, status: int | None = None, **extra: Any
) -> JsonResponse:
    """`status` overrides the error's own; a 422 is answered as 400 either way (see openai_status_for)."""
    status = status or openai_status_for(exc)
    status = 400 if status == 422 else status
    response = JsonResponse(openai_error_body(exc, status=status, **extra), status=status)
    for name, value in _headers(exc).items():
        response[name] = value
    return response


def _headers(exc: errors.DomainError) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.RateLimited) else {}


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, errors.DomainError):
        return Response(error_body(exc), status=status_for(exc), headers=_headers(exc))
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        # DRF's own shape is the fields themselves; every error of this API has a `detail` for people.
        response.data = {
            "detail": first_problem(response.data),
            "code": "ValidationError",
            "details": {"fields": response.data},
        }
    elif response is not None and isinstance(response.data, dict):
        response.data.setdefault("code", type(exc).__name__)
    return response


def first_problem(problems: Any, where: str = "") -> str:
    """The first message of a nested validation error, with where it is: "files: This list may not be empty."."""
    if isinstance(problems, dict):
        for key, value in problems.items():
            return first_problem(value, f"{where}.{key}" if where else str(key))
    if isinstance(problems, list) and problems:
        return first_problem(problems[0], where)
    text = str(problems) or "The input is not valid."
    return f"{where}: {text}" if where and where != "non_field_errors" else text


def install_ninja_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(errors.DomainError)
    def _domain_error(request: HttpRequest, exc: errors.DomainError) -> HttpResponse:
        response = api.create_response(request, error_body(exc), status=status_for(exc))
        for name, value in _headers(exc).items():
            response[name] = value
        return response
