"""The one django-ninja API: the action-style endpoints (ask, stream, feedback, completions, predictions).

Resources (collections, documents, chunks) are served by DRF; see config/urls.py.
"""

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.security import django_auth

from chat.api import openai_router as chat_openai_router
from chat.api import router as chat_router
from config.api_errors import install_ninja_handlers
from config.authentication import ApiTokenAuth
from mlmodels.api import router as ml_router

api = NinjaAPI(
    title="Knowledge base action API",
    version="1",
    description="Ask questions, stream answers, give feedback, call the models. "
    "Authenticate with `Authorization: Token <key>` (or `Bearer <key>`), or a signed-in session.",
    auth=[ApiTokenAuth(), django_auth],
    urls_namespace="ninja",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_ninja_handlers(api)
api.add_router("/chat/", chat_router)
api.add_router("/v1/", chat_openai_router)
api.add_router("/ml/", ml_router)


@api.get("/whoami", tags=["system"], summary="The account the request is authenticated as")
def whoami(request: HttpRequest) -> dict[str, object]:
    return {
        "username": request.user.get_username(),
        "is_staff": bool(getattr(request.user, "is_staff", False)),
    }
