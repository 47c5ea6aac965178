"""The chat API (django-ninja): ask (JSON or a Server-Sent-Events stream), conversations, feedback, and an
OpenAI-compatible pair of endpoints so that any OpenAI SDK or chat client can talk to the knowledge base."""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import Router
from ninja.pagination import LimitOffsetPagination, paginate

from chat import selectors, services
from chat.models import Conversation, Message
from chat.schemas import (
    ALL_COLLECTIONS_MODEL,
    AnswerOut,
    ChatCompletionIn,
    ConversationDetailOut,
    ConversationOut,
    FeedbackIn,
    FeedbackOut,
    MessageOut,
    QuestionIn,
    RenameIn,
)
from chat.streaming import answer_failed, api_sse, openai_sse, references
from core.api_errors import openai_error_response
from core.errors import DomainError, InvalidInput
from knowledge.selectors import collection_list

router = Router(tags=["chat"])
openai_router = Router(tags=["OpenAI-compatible"])

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
    if payload.stream:
        events = services.question_ask_stream(
            user=request.user,
            question=payload.question,
            conversation=conversation,
            collection_slugs=payload.collections,
        )
        return api_sse(request, events)
    asked = services.question_ask(
        user=request.user,
        question=payload.question,
        conversation=conversation,
        collection_slugs=payload.collections,
    )
    return AnswerOut(
        conversation_id=asked.conversation.pk,
        question_id=asked.question.pk,
        message=MessageOut.of(asked.answer, citations=asked.citations),
        rewritten_question=asked.rewritten_question,
    )


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
    return {**_conversation_out(found), "messages": [MessageOut.of(m) for m in messages]}


@router.get(
    "/conversations/{conversation_id}/messages",
    response=list[MessageOut],
    summary="The messages of a conversation",
)
def messages(request: HttpRequest, conversation_id: int) -> Any:
    return [
        MessageOut.of(m) for m in selectors.message_list(user=request.user, conversation_id=conversation_id)
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
        max_tokens = payload.max_completion_tokens or payload.max_tokens
        if payload.stream:
            events = services.question_ask_stream(
                user=request.user,
                question=question,
                collection_slugs=slugs,
                history=history,
                max_tokens=max_tokens,
            )
            include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
            return openai_sse(request, events, model=payload.model, include_usage=include_usage)
        asked = services.question_ask(
            user=request.user,
            question=question,
            collection_slugs=slugs,
            history=history,
            max_tokens=max_tokens,
        )
    except DomainError as exc:
        return openai_error_response(exc)
    message = MessageOut.of(asked.answer, citations=asked.citations).as_data()
    if message["outcome"] == Message.Outcome.FAILED:
        # The stored answer is the failure notice: an OpenAI client is told in the error shape it reads, with
        # the sources that were found beside it.
        failed = openai_error_response(answer_failed(message), citations=message["citations"])
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
                        "content": message["text"] + references(message["citations"]),
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": asked.usage.as_dict(),
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
