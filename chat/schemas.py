"""The chat API's input and output schemas (django-ninja). `MessageOut` is the one JSON shape of a message, on
every wire: the JSON API, the `done` event of both Server-Sent-Events streams and the OpenAI-compatible objects."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema

from chat.models import Citation, Message
from chat.services import MAX_QUESTION_CHARS, WITHHELD_ANSWER, WITHHELD_SOURCE

ALL_COLLECTIONS_MODEL = "knowledge-base"


class QuestionIn(Schema):
    question: str = Field(..., min_length=1, max_length=MAX_QUESTION_CHARS)
    conversation_id: int | None = Field(
        None, description="Continue this conversation (a follow-up question)."
    )
    collections: list[str] = Field(
        default_factory=list, description="Slugs; empty: every collection you may read."
    )
    stream: bool = Field(False, description="Answer as Server-Sent Events: token events, then done.")


# A source of an answer; one the reader may no longer read is shown as withheld, with nothing of it. (No
# docstrings on the output schemas: they would become descriptions in the OpenAPI document.)
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

    @classmethod
    def of(cls, citation: Citation) -> CitationOut:
        if citation.withheld:
            return cls(
                number=citation.number,
                chunk_id=None,
                document_id=None,
                title=WITHHELD_SOURCE,
                section="",
                page=None,
                start_offset=None,
                end_offset=None,
                quote="",
                cited=citation.cited,
            )
        return cls(
            number=citation.number,
            chunk_id=citation.chunk_id,
            document_id=citation.document_id,
            title=citation.title,
            section=citation.section,
            page=citation.page_number,
            start_offset=citation.start_offset,
            end_offset=citation.end_offset,
            quote=citation.quote,
            cited=citation.cited,
        )


class MessageOut(Schema):
    id: int
    conversation_id: int
    role: str
    text: str
    answer_mode: str
    outcome: str
    created_at: datetime
    citations: list[CitationOut]

    @classmethod
    def of(cls, message: Message, *, citations: Sequence[Citation] | None = None) -> MessageOut:
        """`citations`: the message's own when the caller holds them already (just stored); otherwise they are
        read through .all(), which uses a prefetched list (the selectors prefetch them) without a query. An
        answer citing a source withheld from the reader is withheld with it."""
        if citations is None:
            citations = list(message.citations.all()) if message.pk else []
        ordered = sorted(citations, key=lambda c: c.number)
        return cls(
            id=message.pk,
            conversation_id=message.conversation_id,
            role=message.role,
            text=WITHHELD_ANSWER if any(c.withheld and c.cited for c in ordered) else message.text,
            answer_mode=message.answer_mode,
            outcome=message.outcome,
            created_at=message.created_at,
            citations=[CitationOut.of(c) for c in ordered],
        )

    def as_data(self) -> dict[str, Any]:
        """JSON-ready, for a Server-Sent Event or an OpenAI object. The streams have always sent Python's
        isoformat of the time (microseconds, +00:00), where the JSON API renders it with Django's encoder."""
        return {**self.model_dump(mode="json"), "created_at": self.created_at.isoformat()}


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
