"""Page numbers for the resource API (DRF), stricter than DRF's own: `page` is one whole number (or `last`)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination


class PageNumbers(PageNumberPagination):
    """DRF reads the last of several `page` values and takes an empty one as page 1, so `?page=x&page=` answered
    the first page; here anything but a single page number (or `last`) is "Invalid page." (404), as DRF answers a
    page past the end."""

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        values = request.query_params.getlist(self.page_query_param)
        if values and (
            len(values) > 1
            or not ((values[0].isascii() and values[0].isdigit()) or values[0] in self.last_page_strings)
        ):
            raise NotFound(
                self.invalid_page_message.format(page_number=values[0], message="not a page number")
            )
        return super().paginate_queryset(queryset, request, view)
