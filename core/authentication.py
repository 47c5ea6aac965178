"""API tokens, shared by the resource API (DRF) and the action API (django-ninja).

A token belongs to one user account (a person or a client program); staff create them in admin
(Auth Token > Tokens) or with `manage.py drf_create_token USERNAME`. Both `Authorization: Token <key>` and
`Authorization: Bearer <key>` are accepted, the latter so that OpenAI SDKs can use the same key.
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from ninja.security import APIKeyHeader, SessionAuth
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

KEYWORDS = ("token", "bearer")


def key_from_header(header: str) -> str | None:
    parts = header.split()
    if len(parts) == 2 and parts[0].lower() in KEYWORDS:
        return parts[1]
    return None


def user_for_key(key: str) -> AbstractBaseUser | None:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


class TokenAuthentication(authentication.BaseAuthentication):
    """DRF: `Token <key>` or `Bearer <key>`."""

    def authenticate(self, request: Any) -> tuple[AbstractBaseUser, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        key = key_from_header(header)
        if key is None:
            if header.split()[0].lower() in KEYWORDS:
                raise exceptions.AuthenticationFailed("Invalid token header.")
            return None
        user = user_for_key(key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return user, key

    def authenticate_header(self, request: Any) -> str:
        return WWW_AUTHENTICATE


class ApiTokenAuth(APIKeyHeader):
    """django-ninja: the same tokens, from the Authorization header."""

    param_name = "Authorization"

    def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        token = key_from_header(key or "")
        user = user_for_key(token) if token else None
        if user is not None:
            request.user = user  # type: ignore[assignment]
        return user


class SignedInSession(SessionAuth):
    """django-ninja: a signed-in session, with its CSRF check. A request with no signed-in session is simply not
    authenticated by it (so that it gets 401 asking for a token), rather than refused for a missing CSRF token."""

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


# What a 401 names as the way to authenticate (RFC 9110 requires the header on every 401).
WWW_AUTHENTICATE = 'Token realm="api"'


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the token header in the resource API's OpenAPI schema."""

    target_class = "core.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` or `Bearer <key>`; keys are created in admin or by `manage.py drf_create_token`.",
        }
