"""Reads of conversations, messages, citations and feedback, always scoped to the signed-in user's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.db.models import (
    Aggregate,
    Count,
    Exists,
    FloatField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from chat.models import Citation, Conversation, Feedback, Message
from core.errors import ObjectNotFound
from knowledge.selectors import (
    Indexing,
    chunk_get,
    collection_list,
    collections_indexing,
    document_get,
    documents_unreadable,
    example_questions,
    passage_context,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from knowledge.models import Collection, Document

    User = AbstractBaseUser | AnonymousUser

SIDEBAR_CONVERSATIONS = 100
LATENCY_STAGES = ("rewrite", "embed", "search", "rerank", "generate", "total")


class ConversationNotFound(ObjectNotFound):
    """No such conversation."""


class MessageNotFound(ObjectNotFound):
    """No such answer."""


class CitationNotFound(ObjectNotFound):
    """No such source."""


# --- Conversations and messages -------------------------------------------------------------------------------


def conversation_list(*, user: User) -> QuerySet[Conversation]:
    """The user's conversations, most recently active first."""
    return (
        Conversation.objects.filter(owner_id=user.pk)
        .prefetch_related("collections")
        .order_by("-updated_at", "-pk")
    )


def conversation_get(*, user: User, conversation_id: int) -> Conversation:
    """One of the user's own conversations; raises ConversationNotFound (also for someone else's)."""
    conversation = conversation_list(user=user).filter(pk=conversation_id).first()
    if conversation is None:
        raise ConversationNotFound("No such conversation.")
    return conversation


def citations_for(*, user: User) -> QuerySet[Citation]:
    """Citations annotated with `readable`: whether the user may read the cited document now. Access is checked
    when an answer is shown, not only when it was made, so that losing access to a collection hides its quotes
    in old conversations too (see Citation.withheld)."""
    unreadable = documents_unreadable(user=user).filter(pk=OuterRef("document_id"))
    # A deleted document (document_id null) withholds nothing: the answer was the reader's to see when it was
    # made, and no collection's access can be checked any more (its passage page shows nothing of it).
    return Citation.objects.annotate(readable=~Exists(unreadable))


def _messages(user: User) -> QuerySet[Message]:
    return (
        Message.objects.filter(conversation__owner_id=user.pk)
        .prefetch_related(
            Prefetch("citations", queryset=citations_for(user=user).order_by("number")),
            Prefetch(
                "feedback",
                queryset=Feedback.objects.filter(user_id=cast(int, user.pk)),
                to_attr="own_feedback",
            ),
        )
        .order_by("created_at", "pk")
    )


def message_list(*, user: User, conversation_id: int) -> QuerySet[Message]:
    """The messages of one of the user's conversations, oldest first, with citations and the user's feedback
    (`own_feedback`) prefetched; raises ConversationNotFound."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    return _messages(user).filter(conversation=conversation)


def message_get(*, user: User, message_id: int) -> Message:
    """A message of one of the user's own conversations; raises MessageNotFound (also for someone else's)."""
    message = _messages(user).select_related("conversation").filter(pk=message_id).first()
    if message is None:
        raise MessageNotFound("No such answer.")
    return message


@dataclass(frozen=True)
class Overview:
    conversations: list[Conversation]
    collections: list[Collection]
    indexing: list[Indexing] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


def conversation_overview(*, user: User) -> Overview:
    """What the home page shows: the user's recent conversations, the collections they may ask about, those still
    being indexed (the demo, just after `make run`) and questions staff suggest."""
    return Overview(
        conversations=list(conversation_list(user=user)[:SIDEBAR_CONVERSATIONS]),
        collections=list(collection_list(user=user).order_by("name")),
        indexing=collections_indexing(user=user),
        examples=example_questions(user=user),
    )


@dataclass(frozen=True)
class Thread:
    conversation: Conversation
    messages: list[Message]
    conversations: list[Conversation]
    # Collections of the conversation the user may no longer read: no new question can be asked in it.
    unreadable: list[Collection]


def conversation_thread(*, user: User, conversation_id: int) -> Thread:
    """A conversation with its messages (see message_list), the user's other recent conversations and the
    collections of it they lost access to; raises ConversationNotFound."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    readable = set(collection_list(user=user).values_list("pk", flat=True))
    return Thread(
        conversation=conversation,
        messages=list(_messages(user).filter(conversation=conversation)),
        conversations=list(conversation_list(user=user)[:SIDEBAR_CONVERSATIONS]),
        unreadable=[c for c in conversation.collections.all() if c.pk not in readable],
    )


# --- Cited passages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    citation: Citation
    document: Document | None
    before: str
    text: str
    after: str
    # The document was re-indexed since the answer: `text` is the quote as it was, without its context.
    changed: bool = False
    # The document was deleted: nothing of it is shown, since who may read it can no longer be checked.
    removed: bool = False


def citation_passage(*, user: User, citation_id: int) -> Passage:
    """The passage a citation points at, in its document's context.

    Raises CitationNotFound unless the citation belongs to one of the user's own conversations, and
    ObjectNotFound when the user may not (or no longer) read the document's collection."""
    citation = (
        Citation.objects.select_related("message__conversation")
        .filter(pk=citation_id, message__conversation__owner_id=user.pk)
        .first()
    )
    if citation is None:
        raise CitationNotFound("No such source.")
    if citation.chunk_id is not None:
        chunk = chunk_get(user=user, chunk_id=citation.chunk_id)
        # A source may merge neighbouring chunks: the citation's offsets span all of them.
        before, text, after = passage_context(
            document_id=chunk.document_id,
            text=citation.quote,
            start_offset=chunk.start_offset if citation.start_offset is None else citation.start_offset,
            end_offset=chunk.end_offset if citation.end_offset is None else citation.end_offset,
        )
        return Passage(citation=citation, document=chunk.document, before=before, text=text, after=after)
    if citation.document_id is not None:
        document = document_get(user=user, document_id=citation.document_id)
        return Passage(
            citation=citation, document=document, before="", text=citation.quote, after="", changed=True
        )
    return Passage(citation=citation, document=None, before="", text="", after="", changed=True, removed=True)


# --- Analytics ------------------------------------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile, an ordered-set aggregate Django has no class for."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class DayCount:
    day: date
    count: int


@dataclass(frozen=True)
class StageLatency:
    stage: str
    count: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class NegativeFeedback:
    feedback: Feedback
    question: str
    answer: Message


@dataclass(frozen=True)
class Analytics:
    since: datetime
    days: int
    per_day: list[DayCount]
    questions: int
    answers: int
    not_found: int
    failed: int
    helpful: int
    not_helpful: int
    latency: list[StageLatency]
    negative: list[NegativeFeedback] = field(default_factory=list)

    @property
    def busiest_day(self) -> int:
        return max((day.count for day in self.per_day), default=0)

    @property
    def not_found_share(self) -> float | None:
        return self.not_found / self.answers if self.answers else None

    @property
    def failed_share(self) -> float | None:
        return self.failed / self.answers if self.answers else None

    @property
    def helpful_share(self) -> float | None:
        rated = self.helpful + self.not_helpful
        return self.helpful / rated if rated else None


def chat_analytics(*, days: int = 30, negative_limit: int = 10, now: datetime | None = None) -> Analytics:
    """Usage and quality of the answers over the last `days` days (today included), for staff: questions per
    day, unanswered shares, feedback, latency percentiles per pipeline stage, the latest negative feedback."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    first_day = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first_day, datetime.min.time()))
    recent = Message.objects.filter(created_at__gte=since)

    counted = dict(
        recent.filter(role=Message.Role.USER)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    per_day = [DayCount(day, counted.get(day, 0)) for day in (first_day + timedelta(n) for n in range(days))]

    outcomes = recent.filter(role=Message.Role.ASSISTANT).aggregate(
        answers=Count("pk"),
        not_found=Count("pk", filter=Q(outcome=Message.Outcome.NOT_FOUND)),
        failed=Count("pk", filter=Q(outcome=Message.Outcome.FAILED)),
    )
    ratings = Feedback.objects.filter(updated_at__gte=since).aggregate(
        helpful=Count("pk", filter=Q(rating=Feedback.Rating.UP)),
        not_helpful=Count("pk", filter=Q(rating=Feedback.Rating.DOWN)),
    )
    return Analytics(
        since=since,
        days=days,
        per_day=per_day,
        questions=sum(day.count for day in per_day),
        answers=outcomes["answers"],
        not_found=outcomes["not_found"],
        failed=outcomes["failed"],
        helpful=ratings["helpful"],
        not_helpful=ratings["not_helpful"],
        latency=_latency(recent.filter(role=Message.Role.ASSISTANT)),
        negative=_negative_feedback(negative_limit),
    )


def _latency(answers: QuerySet[Message]) -> list[StageLatency]:
    """p50 and p95 of each stage's seconds in the traces, computed by the database (percentile_cont)."""
    aggregates: dict[str, Any] = {}
    for stage in LATENCY_STAGES:
        seconds = Cast(KeyTextTransform(stage, KeyTransform("timings", "trace")), FloatField())
        aggregates[f"{stage}_n"] = Count(seconds)
        aggregates[f"{stage}_p50"] = PercentileCont(seconds, fraction=0.5)
        aggregates[f"{stage}_p95"] = PercentileCont(seconds, fraction=0.95)
    row = answers.aggregate(**aggregates)

    def ms(value: float | None) -> float | None:
        return None if value is None else value * 1000

    return [
        StageLatency(
            stage=stage,
            count=row[f"{stage}_n"],
            p50_ms=ms(row[f"{stage}_p50"]),
            p95_ms=ms(row[f"{stage}_p95"]),
        )
        for stage in LATENCY_STAGES
    ]


def _negative_feedback(limit: int) -> list[NegativeFeedback]:
    question = (
        Message.objects.filter(
            conversation_id=OuterRef("message__conversation_id"),
            role=Message.Role.USER,
            created_at__lte=OuterRef("message__created_at"),
        )
        .order_by("-created_at", "-pk")
        .values("text")[:1]
    )
    rows = (
        Feedback.objects.filter(rating=Feedback.Rating.DOWN)
        .select_related("user", "message")
        .prefetch_related(Prefetch("message__citations", queryset=Citation.objects.order_by("number")))
        .annotate(question=Subquery(question))
        .order_by("-updated_at", "-pk")[:limit]
    )
    return [NegativeFeedback(feedback=row, question=row.question or "", answer=row.message) for row in rows]
