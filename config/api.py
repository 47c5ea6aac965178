"""The one django-ninja API: the action-style endpoints (ask, stream, feedback, completions, predictions).

Resources (collections, documents, chunks) are served by DRF; see config/urls.py.
"""

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chat.api import openai_router as chat_openai_router
from chat.api import router as chat_router
from config.middleware import OPENAI_PREFIX, busy_response, waited_for_a_connection
from config.openapi import document_error_responses
from core.api_errors import error_body, install_ninja_handlers, openai_error_response
from core.authentication import WWW_AUTHENTICATE, ApiTokenAuth, SignedInSession
from core.errors import DomainError, InvalidInput, ServerError
from mlmodels.api import router as ml_router


class KnowledgeAPI(NinjaAPI):
    """The API object, whose OpenAPI schema documents the error statuses of every operation (as the resource
    API's does, from the same list in config.openapi)."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        document_error_responses(schema, openai_prefix=OPENAI_PREFIX)
        return schema


api = KnowledgeAPI(
    title="Knowledge base action API",
    version="1",
    description="Ask questions, stream answers, give feedback, call the models. "
    "Authenticate with `Authorization: Token <key>` (or `Bearer <key>`), or a signed-in session.",
    auth=[ApiTokenAuth(), SignedInSession()],
    urls_namespace="ninja",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_ninja_handlers(api)
logger = logging.getLogger(__name__)


class NotAuthenticated(DomainError):
    """Authentication is required: send `Authorization: Token <key>` (or `Bearer <key>`)."""


class MalformedBody(InvalidInput):
    """The request body could not be read."""


def _error(request: HttpRequest, error: DomainError, status: int, **details: Any) -> HttpResponse:
    """django-ninja's own errors in the APIs' shape: OpenAI's under /api/v1/, the one error body elsewhere."""
    if request.path.startswith(OPENAI_PREFIX):
        return openai_error_response(error, status=status)
    body = error_body(error)
    if details:
        body["details"] = details
    return api.create_response(request, body, status=status)


@api.exception_handler(AuthenticationError)
def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(request, NotAuthenticated(), 401)
    response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return _error(request, InvalidInput(_first_error(exc.errors)), 422, errors=exc.errors)


def _first_error(errors: list[dict[str, Any]]) -> str:
    """The first validation error, with the field it is about: "question: String should have at least..."."""
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "payload", "query"))
    message = str(first.get("msg", "The input is not valid."))
    return f"{where}: {message}" if where else message


@api.exception_handler(MultiPartParserError)
def _malformed_multipart(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    return _error(request, MalformedBody(f"The request body could not be read: {exc}"), 400)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # django-ninja's own refusals ("Cannot parse request body", a CSRF failure): their status, our shape.
    return _error(request, DomainError(str(exc)), exc.status_code)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if waited_for_a_connection(exc):
        return busy_response(request, exc)
    # Never the traceback as the body (django-ninja's default under DEBUG): it is logged, the client gets JSON.
    logger.exception("%s %s failed", request.method, request.path, exc_info=exc)
    return _error(request, ServerError(), 500)


api.add_router("/chat/", chat_router)
api.add_router("/v1/", chat_openai_router)
api.add_router("/ml/", ml_router)


@api.get("/whoami", tags=["system"], summary="The account the request is authenticated as")
def whoami(request: HttpRequest) -> dict[str, object]:
    return {
        "username": request.user.get_username(),
        "is_staff": bool(getattr(request.user, "is_staff", False)),
    }
