"""The one django-ninja API: the action-style endpoints (ask, stream, feedback, completions, predictions).

Resources (collections, documents, chunks) are served by DRF; see config/urls.py.
"""

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from chat.api import openai_router as chat_openai_router
from chat.api import router as chat_router
from config.api_errors import install_ninja_handlers
from config.authentication import WWW_AUTHENTICATE, ApiTokenAuth, SignedInSession
from config.errors import InvalidInput
from config.middleware import OPENAI_PREFIX, busy_response, waited_for_a_connection
from mlmodels.api import router as ml_router

api = NinjaAPI(
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


class NotAuthenticated(InvalidInput):
    """Authentication is required: send `Authorization: Token <key>` (or `Bearer <key>`)."""


@api.exception_handler(AuthenticationError)
def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    error = NotAuthenticated()
    if request.path.startswith(OPENAI_PREFIX):
        response: HttpResponse = JsonResponse(
            {
                "error": {
                    "message": error.message,
                    "type": "authentication_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            status=401,
        )
    else:
        response = api.create_response(
            request, {"detail": error.message, "code": "NotAuthenticated"}, status=401
        )
    response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    if request.path.startswith(OPENAI_PREFIX):
        first = exc.errors[0] if exc.errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "payload"))
        message = (
            f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "Invalid request."))
        )
        return JsonResponse(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": where or None,
                    "code": None,
                }
            },
            status=400,
        )
    return api.create_response(request, {"detail": exc.errors}, status=422)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if waited_for_a_connection(exc):
        return busy_response(request, exc)
    # Never the traceback as the body (django-ninja's default under DEBUG): it is logged, the client gets JSON.
    logger.exception("%s %s failed", request.method, request.path, exc_info=exc)
    body = {"detail": "Something went wrong on the server. Please try again.", "code": "ServerError"}
    if request.path.startswith(OPENAI_PREFIX):
        return JsonResponse(
            {"error": {"message": body["detail"], "type": "server_error", "param": None, "code": None}},
            status=500,
        )
    return api.create_response(request, body, status=500)


api.add_router("/chat/", chat_router)
api.add_router("/v1/", chat_openai_router)
api.add_router("/ml/", ml_router)


@api.get("/whoami", tags=["system"], summary="The account the request is authenticated as")
def whoami(request: HttpRequest) -> dict[str, object]:
    return {
        "username": request.user.get_username(),
        "is_staff": bool(getattr(request.user, "is_staff", False)),
    }
