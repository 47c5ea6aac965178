"""The one place a page's domain error becomes an HTTP error: a server-rendered view lets ObjectNotFound rise from
its selector, and the visitor gets the site's 404 page, as if the view had raised Http404."""

from __future__ import annotations

from collections.abc import Callable

from django.core.handlers.exception import response_for_exception
from django.http import Http404, HttpRequest, HttpResponse

from core.errors import ObjectNotFound


class PageErrorMiddleware:
    """ObjectNotFound out of a view → the response Django gives for Http404 with the error's message: the 404
    handler's page, or under DEBUG the technical 404 page (which config.middleware.SitePagesMiddleware replaces
    with the site's own). The APIs answer their domain errors themselves (core.api_errors), so none reaches here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, ObjectNotFound):
            return None
        not_found = Http404(exception.message)
        not_found.__cause__ = exception
        return response_for_exception(request, not_found)
