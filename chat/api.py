"""The chat API (django-ninja): ask (JSON or a Server-Sent-Events stream), conversations, feedback, and an
OpenAI-compatible pair of endpoints so that any OpenAI SDK or chat client can talk to the knowledge base."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import Field, Router, Schema
from ninja.pagination import LimitOffsetPagination, paginate

from chat import selectors, services
from chat.models import Conversation, Message
from chat.streaming import stream_response
from config.api_errors import status_for
from config.errors import DomainError, InvalidInput
from knowledge.selectors import collection_list

router = Router(tags=["chat"])
openai_router = Router(tags=["OpenAI-compatible"])

ALL_COLLECTIONS_MODEL = "knowledge-base"


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
    "`start`, `rewritten`, `sources`, `token` (repeated), `done` (the stored answer with its citations).",
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
        return stream_response(request, (_sse(event) for event in events), content_type="text/event-stream")
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


def _sse(event: dict[str, Any]) -> str:
    name = event["event"]
    data = {key: value for key, value in event.items() if key != "event"}
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


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


class ChatCompletionIn(Schema):
    model: str = ALL_COLLECTIONS_MODEL
    messages: list[ChatMessageIn] = Field(..., min_length=1)
    stream: bool = False

    model_config = {"extra": "allow"}  # temperature, max_tokens... are accepted and ignored


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def _openai_error(exc: DomainError) -> JsonResponse:
    status = status_for(exc)
    status = 400 if status == 422 else status  # OpenAI clients expect 400 for a request they got wrong
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )
    response = JsonResponse(
        {"error": {"message": exc.message, "type": kind, "code": type(exc).__name__}}, status=status
    )
    if getattr(exc, "retry_after", None):
        response["Retry-After"] = str(exc.retry_after)  # type: ignore[attr-defined]
    return response


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


@openai_router.post("/chat/completions", summary="Chat completions over the knowledge base (OpenAI format)")
def chat_completions(request: HttpRequest, payload: ChatCompletionIn) -> HttpResponse | StreamingHttpResponse:
    try:
        question, history = _question_and_history(payload)
        slugs = _collections_for_model(payload.model)
        stored: list[Message] = []
        events = services.question_ask_stream(
            user=request.user,
            question=question,
            collection_slugs=slugs,
            history=history,
            stored_in=stored,
            stream=payload.stream,
        )
        if payload.stream:
            return stream_response(
                request, _openai_chunks(events, payload.model), content_type="text/event-stream"
            )
        done = next(event for event in events if event["event"] == "done")
    except DomainError as exc:
        return _openai_error(exc)
    message = done["message"]
    trace_tokens = stored[-1].trace.get("tokens") if stored else None
    prompt_tokens = int((trace_tokens or {}).get("prompt") or 0)
    completion_tokens = int((trace_tokens or {}).get("completion") or 0)
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
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "citations": message["citations"],
            "answer_mode": message["answer_mode"],
            "outcome": message["outcome"],
        }
    )


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


def _openai_chunks(events: Iterator[dict[str, Any]], model: str) -> Iterator[str]:
    created = int(time.time())
    chunk_id = "chatcmpl-stream"

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        body = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }
        return f"data: {json.dumps(body, default=str)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    streamed = False
    for event in events:
        if event["event"] == "token":
            streamed = True
            yield chunk({"content": event["text"]})
        elif event["event"] == "done":
            message = event["message"]
            chunk_id = f"chatcmpl-{message['id']}"
            content = _references(message["citations"])
            if not streamed:
                content = (
                    message["text"] + content
                )  # "not in the knowledge base" is not streamed token by token
            yield chunk(
                {"content": content} if content else {},
                "stop",
                citations=message["citations"],
                answer_mode=message["answer_mode"],
                outcome=message["outcome"],
            )
    yield "data: [DONE]\n\n"
