"""The chat API (django-ninja): ask (JSON or a Server-Sent-Events stream), conversations, feedback, and an
OpenAI-compatible pair of endpoints so that any OpenAI SDK or chat client can talk to the knowledge base."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import Field, Router, Schema
from ninja.pagination import LimitOffsetPagination, paginate

from chat import selectors, services
from chat.models import Conversation, Message
from chat.streaming import sse_response, stream_response
from core.api_errors import openai_error_body, openai_error_response
from core.errors import DomainError, InvalidInput, ServiceUnavailable
from knowledge.selectors import collection_list

router = Router(tags=["chat"])
openai_router = Router(tags=["OpenAI-compatible"])

ALL_COLLECTIONS_MODEL = "knowledge-base"
# Each Server-Sent Event: its name (absent for OpenAI's chunks) and its data, JSON text (or `[DONE]`).
SSE_CONTENT = {
    "schema": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": ["start", "rewritten", "sources", "token", "done", "error"]},
            "data": {"type": "string"},
        },
    }
}


# --- Schemas ------------------------------------------------------------------------------------------------------


class QuestionIn(Schema):
    question: str = Field(..., min_length=1, max_length=services.MAX_QUESTION_CHARS)
    conversation_id: int | None = Field(
        None, description="Continue this conversation (a follow-up question)."
    )
    collections: list[str] = Field(
        default_factory=list, description="Slugs; empty: every collection you may read."
    )
    stream: bool = Field(False, description="Answer as Server-Sent Events: token events, then done.")


class CitationOut(Schema):
    number: int
    chunk_id: int | None
    document_id: int | None
    title: str
    section: str
    page: int | None
    start_offset: int | None
    end_offset: int | None
    quote: str
    cited: bool


class MessageOut(Schema):
    id: int
    conversation_id: int
    role: str
    text: str
    answer_mode: str
    outcome: str
    created_at: datetime
    citations: list[CitationOut]


class AnswerOut(Schema):
    conversation_id: int
    question_id: int
    message: MessageOut
    rewritten_question: str


class ConversationOut(Schema):
    id: int
    title: str
    collections: list[str]
    created_at: datetime
    updated_at: datetime


class ConversationDetailOut(ConversationOut):
    messages: list[MessageOut]


class RenameIn(Schema):
    title: str = Field(..., min_length=1, max_length=200)


class FeedbackIn(Schema):
    rating: Literal[1, -1] = Field(..., description="1: helpful, -1: not helpful")
    comment: str = Field("", max_length=4000)


class FeedbackOut(Schema):
    message_id: int
    rating: int
    comment: str


def _conversation_out(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "collections": [collection.slug for collection in conversation.collections.all()],
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


# --- Chat ---------------------------------------------------------------------------------------------------------


@router.post(
    "/ask",
    response={200: AnswerOut},
    summary="Ask a question",
    description="A JSON answer with its citations, or with `stream: true` a `text/event-stream` of events: "
    "`start`, `rewritten`, `sources`, `token` (repeated), then `done` (the stored answer with its citations "
    "and `usage`) or `error` (`detail`, `code`, `status`: the conversation was deleted meanwhile, say).",
    openapi_extra={"responses": {200: {"content": {"text/event-stream": SSE_CONTENT}}}},
)
def ask(request: HttpRequest, payload: QuestionIn) -> Any:
    conversation = (
        selectors.conversation_get(user=request.user, conversation_id=payload.conversation_id)
        if payload.conversation_id is not None
        else None
    )
    events = services.question_ask_stream(
        user=request.user,
        question=payload.question,
        conversation=conversation,
        collection_slugs=payload.collections,
        stream=payload.stream,
    )
    if payload.stream:
        return sse_response(request, events)
    start: dict[str, Any] = {}
    rewritten = payload.question
    done: dict[str, Any] = {}
    for event in events:
        if event["event"] == "start":
            start = event
        elif event["event"] == "rewritten":
            rewritten = event["rewritten_question"]
        elif event["event"] == "done":
            done = event
    return {
        "conversation_id": start["conversation_id"],
        "question_id": start["question_id"],
        "message": done["message"],
        "rewritten_question": rewritten,
    }


@router.get("/conversations", response=list[ConversationOut], summary="Your conversations, newest first")
@paginate(LimitOffsetPagination)
def conversations(request: HttpRequest) -> Any:
    return [_conversation_out(c) for c in selectors.conversation_list(user=request.user)]


@router.get(
    "/conversations/{conversation_id}",
    response=ConversationDetailOut,
    summary="A conversation with its messages",
)
def conversation(request: HttpRequest, conversation_id: int) -> Any:
    found = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    messages = selectors.message_list(user=request.user, conversation_id=found.pk)
    return {**_conversation_out(found), "messages": [services.message_as_dict(m) for m in messages]}


@router.get(
    "/conversations/{conversation_id}/messages",
    response=list[MessageOut],
    summary="The messages of a conversation",
)
def messages(request: HttpRequest, conversation_id: int) -> Any:
    return [
        services.message_as_dict(m)
        for m in selectors.message_list(user=request.user, conversation_id=conversation_id)
    ]


@router.patch("/conversations/{conversation_id}", response=ConversationOut, summary="Rename a conversation")
def rename(request: HttpRequest, conversation_id: int, payload: RenameIn) -> Any:
    found = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    return _conversation_out(services.conversation_rename(conversation=found, title=payload.title))


@router.delete("/conversations/{conversation_id}", response={204: None}, summary="Delete a conversation")
def delete(request: HttpRequest, conversation_id: int) -> Any:
    services.conversation_delete(
        conversation=selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    )
    return 204, None


@router.post(
    "/messages/{message_id}/feedback", response=FeedbackOut, summary="Thumbs up or down on an answer"
)
def feedback(request: HttpRequest, message_id: int, payload: FeedbackIn) -> Any:
    message = selectors.message_get(user=request.user, message_id=message_id)
    given = services.feedback_give(
        user=request.user, message=message, rating=payload.rating, comment=payload.comment
    )
    return {"message_id": message.pk, "rating": given.rating, "comment": given.comment}


# --- OpenAI-compatible --------------------------------------------------------------------------------------------


class ChatMessageIn(Schema):
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptionsIn(Schema):
    include_usage: bool = False


class ChatCompletionIn(Schema):
    model: str = ALL_COLLECTIONS_MODEL
    messages: list[ChatMessageIn] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptionsIn | None = None
    max_tokens: int | None = Field(None, ge=1, description="Caps the language model's answer.")
    max_completion_tokens: int | None = Field(None, ge=1, description="The same as max_tokens.")

    model_config = {"extra": "allow"}  # temperature, top_p... are accepted and ignored


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


@openai_router.get("/models", summary="One model per collection you may read, and one for all of them")
def models(request: HttpRequest) -> Any:
    created = int(time.time())
    data = [
        {"id": ALL_COLLECTIONS_MODEL, "object": "model", "created": created, "owned_by": "knowledge-platform"}
    ]
    for collection in collection_list(user=request.user).order_by("slug"):
        data.append(
            {
                "id": f"{ALL_COLLECTIONS_MODEL}/{collection.slug}",
                "object": "model",
                "created": created,
                "owned_by": "knowledge-platform",
            }
        )
    return {"object": "list", "data": data}


class AnswerFailed(ServiceUnavailable):
    """The language model failed; the answer holds the notice and the sources that were found."""


@openai_router.post(
    "/chat/completions",
    summary="Chat completions over the knowledge base (OpenAI format)",
    description="A `chat.completion` object, or with `stream: true` a `text/event-stream` of "
    "`chat.completion.chunk` objects ending with `data: [DONE]` (an `error` object instead when the answer "
    "failed). Extra fields: `citations`, `answer_mode`, `outcome`.",
    openapi_extra={
        "responses": {
            200: {
                "description": "The completion (or its chunks).",
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "required": ["id", "object", "choices"]}
                    },
                    "text/event-stream": SSE_CONTENT,
                },
            }
        }
    },
)
def chat_completions(request: HttpRequest, payload: ChatCompletionIn) -> HttpResponse | StreamingHttpResponse:
    try:
        question, history = _question_and_history(payload)
        slugs = _collections_for_model(payload.model)
        events = services.question_ask_stream(
            user=request.user,
            question=question,
            collection_slugs=slugs,
            history=history,
            stream=payload.stream,
            max_tokens=payload.max_completion_tokens or payload.max_tokens,
        )
        if payload.stream:
            include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
            return stream_response(
                request,
                _openai_chunks(events, payload.model, include_usage=include_usage),
                content_type="text/event-stream",
            )
        done = next(event for event in events if event["event"] == "done")
    except DomainError as exc:
        return openai_error_response(exc)
    message = done["message"]
    if message["outcome"] == Message.Outcome.FAILED:
        # The stored answer is the failure notice: an OpenAI client is told in the error shape it reads, with
        # the sources that were found beside it.
        failed = openai_error_response(
            AnswerFailed(_first_line(message["text"])), citations=message["citations"]
        )
        # The answer was made and stored (as failed): an SDK retrying the 5xx would ask it again, twice more.
        failed["x-should-retry"] = "false"
        return failed
    return JsonResponse(
        {
            "id": f"chatcmpl-{message['id']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": message["text"] + _references(message["citations"]),
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": done["usage"],
            "citations": message["citations"],
            "answer_mode": message["answer_mode"],
            "outcome": message["outcome"],
        }
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip("* ") if text.strip() else AnswerFailed.__doc__ or ""


def _question_and_history(payload: ChatCompletionIn) -> tuple[str, list[tuple[str, str]]]:
    turns = [(m.role, _text(m.content)) for m in payload.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise InvalidInput("The last message must be a user message with text.")
    return turns[-1][1], turns[:-1]


def _collections_for_model(model: str) -> list[str]:
    if model == ALL_COLLECTIONS_MODEL:
        return []
    prefix = f"{ALL_COLLECTIONS_MODEL}/"
    if not model.startswith(prefix):
        raise InvalidInput(
            f"Unknown model {model!r}: use {ALL_COLLECTIONS_MODEL!r} or one listed by /v1/models."
        )
    return [model[len(prefix) :]]


def _references(citations: list[dict[str, Any]]) -> str:
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


def _openai_chunks(events: Iterator[dict[str, Any]], model: str, *, include_usage: bool) -> Iterator[str]:
    created = int(time.time())
    # One id for every chunk of a stream, as OpenAI gives it; the stored answer's id is not known until the end.
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"

    def data(body: dict[str, Any]) -> str:
        return f"data: {json.dumps(body, default=str)}\n\n"

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> str:
        # No delta: the last chunk, which OpenAI sends with no choices (usage, when asked for).
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return data(
            {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
        )

    def error(exc: DomainError, **extra: Any) -> str:
        return data(openai_error_body(exc, **extra))

    yield chunk({"role": "assistant", "content": ""})
    streamed = False
    try:
        for event in events:
            if event["event"] == "token":
                streamed = True
                yield chunk({"content": event["text"]})
            elif event["event"] == "done":
                message = event["message"]
                if message["outcome"] == Message.Outcome.FAILED:
                    # The SDK raises on an error object in the stream, so the client knows the text so far
                    # (cut off, or nothing) is not the answer.
                    yield error(AnswerFailed(_first_line(message["text"])), citations=message["citations"])
                    return
                content = _references(message["citations"])
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
                    yield chunk(None, usage=event["usage"])
    except DomainError as exc:
        yield error(exc)
        return
    yield "data: [DONE]\n\n"
