"""The answer's events (chat.events) encoded for each wire, with the one error handling they share, and streamed
HTTP responses that stream under WSGI and ASGI alike.

Three wires carry an answer: the page's Server-Sent Events (`page_sse`: the start with the conversation's address,
the done with the answer rendered as the page renders it), the API's (`api_sse`: the same events, the done with
the message as `MessageOut`) and the OpenAI-compatible chunks (`openai_sse`). A failure after the stream has
started (the status line has gone out already) ends every wire the same way (`_guarded`): with an error event in
that wire's shape, never a broken connection.

Under ASGI, Django buffers a StreamingHttpResponse whose content is a plain iterator (it has to consume it in a
thread), so nothing would reach the client before the end. There the iterator is wrapped in an async one that
pulls each item in Django's thread for synchronous code, where the database connection of the request lives.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse

from chat.events import Done, Event, Failed, Started, Token
from chat.models import Message
from chat.schemas import MessageOut
from core.api_errors import error_body, openai_error_body, status_for
from core.errors import DomainError, ServiceUnavailable

logger = logging.getLogger(__name__)

_END = object()
UNEXPECTED_ERROR = "Something went wrong while answering. Please try again."


class AnswerFailed(ServiceUnavailable):
    """The language model failed; the answer holds the notice and the sources that were found."""


# --- Server-Sent Events -----------------------------------------------------------------------------------------


def sse_event(name: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event: `event: <name>`, `data: <json>`, a blank line."""
    return f"event: {name}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


def sse_response(request: HttpRequest, events: Iterable[tuple[str, dict[str, Any]]]) -> StreamingHttpResponse:
    """Stream (name, data) pairs as Server-Sent Events; an error raised while they are made becomes a last
    `error` event."""
    chunks = (sse_event(name, data) for name, data in events)
    return stream_response(request, _guarded(chunks, _sse_error), content_type="text/event-stream")


def page_sse(request: HttpRequest, events: Iterable[Event]) -> StreamingHttpResponse:
    """The answer for the chat page (static/chat/chat.js): the API's events, plus the conversation's address on
    `start` and the answer's HTML (sanitized Markdown, sources, feedback) on `done`."""

    def pairs() -> Iterator[tuple[str, dict[str, Any]]]:
        for event in events:
            if isinstance(event, Started):
                url = reverse("chat:conversation", args=[event.conversation.pk])
                yield event.kind, {**event.data, "url": url}
            elif isinstance(event, Done):
                html = render_to_string("chat/_message.html", {"message": event.message}, request=request)
                yield event.kind, {**_done_data(event), "html": html}
            else:
                yield event.kind, event.data

    return sse_response(request, pairs())


def api_sse(request: HttpRequest, events: Iterable[Event]) -> StreamingHttpResponse:
    """The answer for API clients: `start`, `rewritten`, `sources`, `token`..., then `done` (or `error`)."""
    return sse_response(request, ((e.kind, _done_data(e) if isinstance(e, Done) else e.data) for e in events))


def _done_data(event: Done) -> dict[str, Any]:
    return {
        "message": MessageOut.of(event.message, citations=event.citations).as_data(),
        "usage": event.usage.as_dict(),
    }


def _sse_error(failed: Failed) -> str:
    if failed.error is None:
        return sse_event(failed.kind, {"detail": UNEXPECTED_ERROR})
    # Refused part-way (the conversation was deleted meanwhile, say): the reason, as the JSON API gives it.
    return sse_event(failed.kind, {**error_body(failed.error), "status": status_for(failed.error)})


# --- OpenAI-compatible chunks -----------------------------------------------------------------------------------


def openai_sse(
    request: HttpRequest, events: Iterable[Event], *, model: str, include_usage: bool
) -> StreamingHttpResponse:
    """The answer as OpenAI streams a chat completion: `chat.completion.chunk` objects, then `data: [DONE]`; an
    error object instead of the end when the answer failed or the stream broke (the SDKs raise on it, so the
    client knows the text so far is not the answer)."""
    chunks = _openai_chunks(events, model=model, include_usage=include_usage)
    return stream_response(request, _guarded(chunks, _openai_error), content_type="text/event-stream")


def _openai_data(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, default=str)}\n\n"


def _openai_chunks(events: Iterable[Event], *, model: str, include_usage: bool) -> Iterator[str]:
    created = int(time.time())
    # One id for every chunk of a stream, as OpenAI gives it; the stored answer's id is not known until the end.
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> str:
        # No delta: the last chunk, which OpenAI sends with no choices (usage, when asked for).
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return _openai_data(
            {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
        )

    streamed = False
    for event in events:
        if isinstance(event, Started):
            yield chunk({"role": "assistant", "content": ""})
        elif isinstance(event, Token):
            streamed = True
            yield chunk({"content": event.text})
        elif isinstance(event, Done):
            message = MessageOut.of(event.message, citations=event.citations).as_data()
            if message["outcome"] == Message.Outcome.FAILED:
                yield _openai_data(openai_error_body(answer_failed(message), citations=message["citations"]))
                return
            content = references(message["citations"])
            if not streamed:
                # "not in the knowledge base" is not streamed token by token
                content = message["text"] + content
            yield chunk(
                {"content": content} if content else {},
                "stop",
                citations=message["citations"],
                answer_mode=message["answer_mode"],
                outcome=message["outcome"],
            )
            if include_usage:
                yield chunk(None, usage=event.usage.as_dict())
            yield "data: [DONE]\n\n"


def _openai_error(failed: Failed) -> str:
    return _openai_data(openai_error_body(failed.error or ServiceUnavailable(UNEXPECTED_ERROR)))


def answer_failed(message: dict[str, Any]) -> AnswerFailed:
    """The error an OpenAI client is given for an answer stored as failed (its first line is the notice)."""
    text = message["text"].strip()
    return AnswerFailed(text.splitlines()[0].strip("* ") if text else AnswerFailed.__doc__ or "")


def references(citations: list[dict[str, Any]]) -> str:
    """The cited sources as the lines an OpenAI client shows under the answer's text."""
    cited = [c for c in citations if c["cited"]]
    if not cited:
        return ""
    lines = []
    for citation in cited:
        where = ", ".join(
            part
            for part in (citation["section"], f"p. {citation['page']}" if citation["page"] else "")
            if part
        )
        lines.append(f"[{citation['number']}] {citation['title']}" + (f" — {where}" if where else ""))
    return "\n\nSources:\n" + "\n".join(lines)


# --- The one error handling, and the response -------------------------------------------------------------------


def _guarded(chunks: Iterable[str], encode_error: Callable[[Failed], str]) -> Iterator[str]:
    """The chunks of a wire, as long as they come; a failure while they are made (by the service, which yields
    lazily, or by the encoder) ends the stream with `encode_error`'s last chunk instead of an exception."""
    try:
        yield from chunks
    except DomainError as exc:
        yield encode_error(Failed(error=exc))
    except Exception:
        logger.exception("a streamed answer failed after it had started")
        yield encode_error(Failed())


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
