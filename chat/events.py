"""The answer flow's one vocabulary: what `chat.pipeline` and `chat.services.question_ask_stream` yield while a
question is answered, in this order:

    Started, Rewritten, Sources (absent when nothing relevant was retrieved), Token (repeated, or none), Done

`chat.pipeline.answer` ends with `Answered` (the answer, not stored yet) where the service ends with `Done` (the
stored answer). `Failed` never comes from the producer: it is what a wire sends instead of the rest when the stream
breaks after it has started (see chat.streaming). Each event's `kind` is its name on every Server-Sent-Events wire;
`data` (where the event has one of its own) is its JSON-ready payload there. `fold` waits for the whole answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from chat.models import Citation, Conversation, Message
    from chat.pipeline import Answer
    from core.errors import DomainError


@dataclass(frozen=True)
class Started:
    """The question is stored (in a new conversation, or one continued)."""

    kind: ClassVar[str] = "start"
    conversation: Conversation
    question: Message

    @property
    def data(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation.pk,
            "question_id": self.question.pk,
            "title": self.conversation.title,
        }


@dataclass(frozen=True)
class Rewritten:
    """The question as retrieval sees it: a follow-up made standalone, or the question unchanged."""

    kind: ClassVar[str] = "rewritten"
    question: str
    rewritten_question: str

    @property
    def data(self) -> dict[str, Any]:
        return {"question": self.question, "rewritten_question": self.rewritten_question}


@dataclass(frozen=True)
class Sources:
    """The numbered sources the answer is made from (`chat.pipeline.SourceRef.as_dict` each)."""

    kind: ClassVar[str] = "sources"
    sources: tuple[dict[str, Any], ...]

    @property
    def data(self) -> dict[str, Any]:
        return {"sources": list(self.sources)}


@dataclass(frozen=True)
class Token:
    """A piece of the answer's text, with invalid citations already dropped."""

    kind: ClassVar[str] = "token"
    text: str

    @property
    def data(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass
class Usage:
    """The tokens an answer took: the prompt read and the completion written, None where the language model's
    server did not say (0 on the wire). The one usage of the answer flow: `chat.llm` fills it in as the server
    reports it (a stream, at its end), `Done` and `Asked` carry the stored answer's."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens or 0,
            "completion_tokens": self.completion_tokens or 0,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Answered:
    """The pipeline's last event: the answer made, not stored yet (the service stores it and says Done)."""

    kind: ClassVar[str] = "answer"
    answer: Answer

    @property
    def data(self) -> dict[str, Any]:
        return {"answer": self.answer}


@dataclass(frozen=True)
class Done:
    """The service's last event: the answer as stored, with its citations and the tokens it took."""

    kind: ClassVar[str] = "done"
    message: Message
    citations: tuple[Citation, ...]
    usage: Usage


@dataclass(frozen=True)
class Failed:
    """The stream broke after it had started: `error` is the domain error that stopped it (the conversation
    was deleted meanwhile, say), None for an unexpected one (logged where it was caught)."""

    kind: ClassVar[str] = "error"
    error: DomainError | None = None


# What the service yields; the pipeline yields the same but ends with Answered instead of Started ... Done.
Event = Started | Rewritten | Sources | Token | Done
PipelineEvent = Rewritten | Sources | Token | Answered


@dataclass(frozen=True)
class Asked:
    """A whole answer, waited for: the question and the answer as stored, and what the stream said on the way."""

    conversation: Conversation
    question: Message
    answer: Message
    citations: tuple[Citation, ...]
    rewritten_question: str
    usage: Usage


def fold(events: Iterable[Event]) -> Asked:
    """Wait for the whole answer: the one place a stream of events is read to its end instead of sent on."""
    started: Started | None = None
    rewritten: str | None = None
    for event in events:
        if isinstance(event, Started):
            started = event
        elif isinstance(event, Rewritten):
            rewritten = event.rewritten_question
        elif isinstance(event, Done):
            assert started is not None, "an answer stream starts with Started"
            return Asked(
                conversation=started.conversation,
                question=started.question,
                answer=event.message,
                citations=event.citations,
                rewritten_question=started.question.text if rewritten is None else rewritten,
                usage=event.usage,
            )
    raise AssertionError("an answer stream ends with Done")
