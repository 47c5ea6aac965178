"""Every change to conversations, messages and feedback goes through these functions."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chat import pipeline
from chat.events import Answered, Asked, Done, Event, Started, Usage, fold
from chat.models import Citation, Conversation, Feedback, Message
from chat.selectors import ConversationNotFound
from core.errors import InvalidInput, RateLimited
from core.validators import INVISIBLE, has_invisible
from knowledge.selectors import chunk_ids_existing, collections_for_search, document_ids_existing

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser

logger = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
# A conversation a client sends with its question (the OpenAI-compatible API): only the last turns are read, as of
# a stored conversation, and none may be longer than this (a stored answer is far shorter).
HISTORY_TURNS = 10
MAX_HISTORY_TURN_CHARS = 20_000
# What is shown instead of a source (and of an answer that cites it) the reader may no longer read.
WITHHELD_SOURCE = "A source you can no longer read"
WITHHELD_ANSWER = (
    "This answer quoted documents you can no longer read, so it is not shown. Ask again to get an answer "
    "from the documents you may read now."
)
# The first key of the advisory locks that serialize one user's questions (any constant of this project's own).
RATE_LOCK_NAMESPACE = 7301
# Storing an answer is tried again when a cited chunk or document is deleted between the check and the insert.
STORE_ATTEMPTS = 3


class ConversationGone(ConversationNotFound):
    """The conversation was deleted while the answer was being made; the answer was not kept."""


class TooManyQuestions(RateLimited):
    """You are asking too fast."""


def _title_from(question: str) -> str:
    title = " ".join(INVISIBLE.sub(" ", question).split())
    return title if len(title) <= 80 else title[:79].rsplit(" ", 1)[0] + "…"


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())
    if not title:
        raise InvalidInput("A title cannot be empty.")
    if has_invisible(title):
        raise InvalidInput("A title cannot hold control or text-direction characters.")
    conversation.title = title[:200]
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with its messages. Its row is locked first, as answers lock it before they are
    stored, so that an answer being stored meanwhile is either deleted with it or refused (ConversationGone)."""
    with transaction.atomic():
        if Conversation.objects.select_for_update().filter(pk=conversation.pk).exists():
            conversation.delete()


def _rate_limit(user: User) -> None:
    """At most CHAT_RATE_LIMIT questions in any CHAT_RATE_WINDOW seconds per user. Counted from the stored
    questions themselves, so every web process sees the same count without a shared cache. Called in the
    transaction that stores the question: a per-user advisory lock makes the count and the insert one step, so
    that concurrent questions cannot all see room for one more."""
    limit = int(settings.CHAT_RATE_LIMIT)
    if limit <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [RATE_LOCK_NAMESPACE, int(user.pk or 0) % 2**31]
        )
    window = timedelta(seconds=int(settings.CHAT_RATE_WINDOW))
    since = timezone.now() - window
    recent = list(
        Message.objects.filter(conversation__owner_id=user.pk, role=Message.Role.USER, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) >= limit:
        retry_after = max(1, math.ceil((recent[-1] + window - timezone.now()).total_seconds()))
        raise TooManyQuestions(
            f"You can ask {limit} questions every {int(settings.CHAT_RATE_WINDOW)} seconds; try again in {retry_after} s.",
            retry_after=retry_after,
        )


def _history(conversation: Conversation, user: User) -> list[tuple[str, str]]:
    """The last turns, as the asker may see them now: an answer that cites a collection they lost access to
    reaches the language model as the notice they see instead of it."""
    from chat.selectors import citations_for

    withheld = citations_for(user=user).filter(message=OuterRef("pk"), cited=True, readable=False)  # type: ignore[misc]
    rows = (
        conversation.messages.annotate(withheld=Exists(withheld))
        .order_by("-created_at", "-pk")
        .values_list("role", "text", "withheld")[:HISTORY_TURNS]
    )
    return [(role, WITHHELD_ANSWER if hidden else text) for role, text, hidden in reversed(rows)]


def question_ask_stream(
    *,
    user: User,
    question: str,
    conversation: Conversation | None = None,
    collection_ids: Sequence[int] = (),
    collection_slugs: Sequence[str] = (),
    history: Sequence[tuple[str, str]] | None = None,
    stream: bool = True,
    max_tokens: int | None = None,
) -> Iterator[Event]:
    """Ask a question and yield the answer as it is made (chat.events): Started once the question is stored,
    Rewritten, Sources, Token..., and last Done with the stored answer, its citations and the tokens it took.
    `history` ((role, text) pairs) replaces the conversation's own, for clients that send the whole conversation
    each time (the OpenAI-compatible API). With `stream` off the language model is asked for the whole answer
    at once (one Token); `max_tokens` caps the model's answer.

    Raises (before the first event) InvalidInput, TooManyQuestions and CollectionNotReadable; while streaming,
    ConversationGone when the conversation is deleted before the answer is stored."""
    question = question.strip()
    if not question:
        raise InvalidInput("The question is empty.")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInput(
            f"The question is {len(question):,} characters long; at most {MAX_QUESTION_CHARS:,} are allowed."
        )
    # Everything that can refuse the question is checked before anything is written (the rate limit again in the
    # transaction that writes, where concurrent questions are counted one at a time), so that a refused question
    # leaves no empty conversation behind.
    _rate_limit(user)
    chosen: list[Any] = []
    if conversation is None:
        if collection_ids or collection_slugs:
            chosen = collections_for_search(user=user, ids=collection_ids, slugs=collection_slugs)
        collections = chosen or collections_for_search(user=user)
    else:
        conversation_collection_ids = list(conversation.collections.values_list("pk", flat=True))
        collections = (
            collections_for_search(user=user, ids=conversation_collection_ids)
            if conversation_collection_ids
            else collections_for_search(user=user)
        )
    if history is not None:
        history = list(history)[-HISTORY_TURNS:]
        longest = max((len(text) for _, text in history), default=0)
        if longest > MAX_HISTORY_TURN_CHARS:
            raise InvalidInput(
                f"A message of the conversation is {longest:,} characters long; "
                f"at most {MAX_HISTORY_TURN_CHARS:,} are allowed."
            )
    history = list(history) if history is not None else (_history(conversation, user) if conversation else [])
    with transaction.atomic():
        _rate_limit(user)
        if conversation is None:
            conversation = Conversation.objects.create(
                owner_id=cast(int, user.pk), title=_title_from(question)
            )
            Conversation.collections.through.objects.bulk_create(
                [
                    Conversation.collections.through(conversation_id=conversation.pk, collection_id=c.pk)
                    for c in chosen
                ]
            )
        else:
            _lock_conversation(conversation)
            if not conversation.title:
                conversation.title = _title_from(question)
            conversation.save(update_fields=["title", "updated_at"])
        asked = Message.objects.create(conversation=conversation, role=Message.Role.USER, text=question)
    return _stream(
        conversation,
        asked,
        history,
        collections,
        stream=stream,
        max_tokens=max_tokens,
    )


def _stream(
    conversation: Conversation,
    asked: Message,
    history: list[tuple[str, str]],
    collections: list[Any],
    *,
    stream: bool = True,
    max_tokens: int | None = None,
) -> Iterator[Event]:
    final: pipeline.Answer | None = None
    events = pipeline.answer(
        question=asked.text, history=history, collections=collections, stream=stream, max_tokens=max_tokens
    )
    try:
        yield Started(conversation=conversation, question=asked)
        for event in events:
            if isinstance(event, Answered):
                final = event.answer
            else:
                yield event
    except GeneratorExit:
        # The client went away (tab closed, connection dropped): the answer is still made and stored, so that it
        # is there when the user comes back to the conversation.
        for event in events:
            if isinstance(event, Answered):
                # Deleted meanwhile: nobody is left to show the answer to.
                with contextlib.suppress(ConversationGone):
                    _store_answer(conversation, event.answer)
        raise
    assert final is not None
    stored, citations = _store_answer(conversation, final)
    tokens = stored.trace.get("tokens") or {}
    usage = Usage(
        prompt_tokens=int(tokens.get("prompt") or 0), completion_tokens=int(tokens.get("completion") or 0)
    )
    yield Done(message=stored, citations=tuple(citations), usage=usage)


def _lock_conversation(conversation: Conversation) -> None:
    """Lock the conversation's row for this transaction, so that it cannot be deleted under the rows about to be
    written into it; raises ConversationGone when it was deleted already."""
    if not Conversation.objects.select_for_update().filter(pk=conversation.pk).exists():
        raise ConversationGone()


def _store_answer(conversation: Conversation, answer: pipeline.Answer) -> tuple[Message, list[Citation]]:
    """Store the answer and its citations. Raises ConversationGone when the conversation was deleted while the
    answer was being made; a cited chunk or document deleted meanwhile is kept as a citation without its link."""
    for attempt in range(STORE_ATTEMPTS):
        try:
            with transaction.atomic():
                # Foreign keys are checked at each insert, not at commit: a row that vanished under a citation
                # shows here, where it can be told apart from the rest and the store tried again without it.
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                _lock_conversation(conversation)
                return _write_answer(conversation, answer)
        except IntegrityError:
            if attempt == STORE_ATTEMPTS - 1:
                raise
            logger.info(
                "a source of an answer in conversation %s was deleted meanwhile; storing again",
                conversation.pk,
            )
    raise AssertionError("unreachable")


def _write_answer(conversation: Conversation, answer: pipeline.Answer) -> tuple[Message, list[Citation]]:
    chunk_ids = {source.chunk_ids[0] for source in answer.sources}
    document_ids = {source.document_id for source in answer.sources}
    live_chunks = chunk_ids_existing(ids=chunk_ids)
    live_documents = document_ids_existing(ids=document_ids)
    message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text=answer.text,
        answer_mode=answer.answer_mode,
        outcome=answer.outcome,
        trace=answer.trace,
    )
    citations = Citation.objects.bulk_create(
        [
            Citation(
                message=message,
                number=source.number,
                chunk_id=source.chunk_ids[0] if source.chunk_ids[0] in live_chunks else None,
                document_id=source.document_id if source.document_id in live_documents else None,
                title=source.title[:500],
                section=source.section,
                page_number=source.page,
                start_offset=source.start_offset,
                end_offset=source.end_offset,
                quote=source.text,
                cited=source.number in answer.cited,
            )
            for source in answer.sources
        ]
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=message.created_at)
    _carry_citations(message, citations)
    return message, citations


def _carry_citations(message: Message, citations: list[Citation]) -> None:
    """Make `message.citations.all()` the citations just written, without a query, as the selectors' prefetch
    would: whoever shows the answer next (the page's `done` event renders it) need not read back what was just
    stored. Django has no public call for it; these are the attributes its prefetch_related sets."""
    cached = message.citations.all()
    cached._result_cache = sorted(citations, key=lambda c: c.number)
    cached._prefetch_done = True  # type: ignore[attr-defined]
    message._prefetched_objects_cache = {"citations": cached}  # type: ignore[attr-defined]


def question_ask(
    *,
    user: User,
    question: str,
    conversation: Conversation | None = None,
    collection_ids: Sequence[int] = (),
    collection_slugs: Sequence[str] = (),
    history: Sequence[tuple[str, str]] | None = None,
    max_tokens: int | None = None,
) -> Asked:
    """Ask a question and wait for the whole answer (the language model asked for it at once); the arguments
    and errors are question_ask_stream's."""
    return fold(
        question_ask_stream(
            user=user,
            question=question,
            conversation=conversation,
            collection_ids=collection_ids,
            collection_slugs=collection_slugs,
            history=history,
            stream=False,
            max_tokens=max_tokens,
        )
    )


def feedback_give(*, user: User, message: Message, rating: int, comment: str = "") -> Feedback:
    """Thumbs up (1) or down (-1) on an answer, with an optional comment; giving it again replaces it."""
    if rating not in (1, -1):
        raise InvalidInput("rating must be 1 (helpful) or -1 (not helpful).")
    if message.role != Message.Role.ASSISTANT:
        raise InvalidInput("Feedback is given on answers, not on questions.")
    feedback, _ = Feedback.objects.update_or_create(
        message=message, user_id=user.pk, defaults={"rating": rating, "comment": comment.strip()[:4000]}
    )
    return feedback
