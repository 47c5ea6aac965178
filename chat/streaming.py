"""Streamed HTTP responses (Server-Sent Events) that stream under WSGI and ASGI alike.

Under ASGI, Django buffers a StreamingHttpResponse whose content is a plain iterator (it has to consume it in a
thread), so nothing would reach the client before the end. There the iterator is wrapped in an async one that
pulls each item in Django's thread for synchronous code, where the database connection of the request lives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, StreamingHttpResponse

from core.api_errors import error_body, status_for
from core.errors import DomainError

logger = logging.getLogger(__name__)

_END = object()


def sse_event(name: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event: `event: <name>`, `data: <json>`, a blank line."""
    return f"event: {name}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


def sse_response(request: HttpRequest, events: Iterable[dict[str, Any]]) -> StreamingHttpResponse:
    """Stream `events` (dicts with an "event" key naming them, the rest is the data) as Server-Sent Events.

    An error raised while streaming (the status line has gone out already) becomes a last `error` event."""
    return stream_response(request, _encode(events), content_type="text/event-stream")


def stream_response(
    request: HttpRequest, chunks: Iterable[str | bytes], *, content_type: str
) -> StreamingHttpResponse:
    """A response that sends each chunk as soon as it is made, under WSGI and ASGI."""
    content: Iterable[str | bytes] | AsyncIterator[str | bytes] = (
        _pulled_in_sync_thread(iter(chunks)) if isinstance(request, ASGIRequest) else chunks
    )
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Cache-Control"] = "no-cache"
    # nginx and some load balancers buffer responses unless told not to.
    response["X-Accel-Buffering"] = "no"
    return response


def _encode(events: Iterable[dict[str, Any]]) -> Iterator[str]:
    try:
        for event in events:
            data = {key: value for key, value in event.items() if key != "event"}
            yield sse_event(str(event["event"]), data)
    except DomainError as exc:
        # Refused part-way (the conversation was deleted meanwhile, say): the reason, as the JSON API gives it.
        yield sse_event("error", {**error_body(exc), "status": status_for(exc)})
    except Exception:
        logger.exception("a streamed answer failed after it had started")
        yield sse_event("error", {"detail": "Something went wrong while answering. Please try again."})


def _next(iterator: Iterator[str | bytes]) -> str | bytes | object:
    return next(iterator, _END)


async def _pulled_in_sync_thread(iterator: Iterator[str | bytes]) -> AsyncIterator[str | bytes]:
    pull = sync_to_async(_next, thread_sensitive=True)
    try:
        while True:
            item = await pull(iterator)
            if item is _END:
                return
            yield cast(str | bytes, item)
    finally:
        # The client went away (or the stream ended): let the generator run its cleanup in the same thread.
        close = getattr(iterator, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()
