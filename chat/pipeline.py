"""The answer pipeline: rewrite a follow-up, retrieve, decide whether the knowledge base holds the answer, build
numbered sources within a token budget, answer (LLM or extractive), check the citations.

It reads and computes; `chat.services` stores what it produces. Everything is yielded as events so that the same
code serves a JSON answer, a Server-Sent-Events stream and the web page.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection

from chat import extractive, prompts
from chat.citations import CitationFilter, check_citations
from chat.events import Answered, PipelineEvent, Rewritten, Sources, Token, Usage
from chat.llm import ChatModel, LLMError, get_chat_model
from knowledge.embeddings import get_embedder
from knowledge.search import SearchHit, SearchParams, SearchResult, search
from knowledge.selectors import document_texts

if TYPE_CHECKING:
    from knowledge.models import Collection

logger = logging.getLogger(__name__)

NOT_FOUND_TEXT = (
    "The knowledge base does not contain an answer to this question. "
    "Try other words, or ask about something the documents cover."
)

_FOLLOW_UP = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|there|he|she|him|her|such|same|also|too|"
    r"else|instead|above|previous|former|latter|one|ones)\b|^(and|but|or|so|what about|how about|why not|then)\b",
    re.IGNORECASE,
)


# Chunks retrieved per question and given to a language model (the extractive answerer reads deeper, see
# extractive.READ_CHUNKS). Measured, with the thresholds below, by `manage.py evaluate_answers` (benchmarks/README.md,
# "Answer quality"), not deployment choices.
RETRIEVAL_LIMIT = 8
# Below this cosine similarity of the best chunk the knowledge base is taken not to hold the answer (no LLM call):
# with it and extractive.MIN_ANSWER, 0.96 of the 70 out-of-domain questions abstained and none of the 75 PostgreSQL
# questions was refused.
MIN_SIMILARITY = 0.3
# Single chunks below this similarity that only the dense search found are not given as sources.
MIN_SOURCE_SIMILARITY = 0.2

# No source, as read by the model, quoted to the user or stored with the answer, is longer than this: a chunk made
# before chunks were bounded in characters (or several merged) can be megabytes with a token count of a few.
MAX_SOURCE_CHARS = 12_000
# The fewest characters a token of the model covers, for text whose stored count is not to be trusted.
CHARS_PER_TOKEN_FLOOR = 6


@dataclass
class SourceRef:
    """A numbered source as shown to the model and to the user."""

    number: int
    chunk_ids: list[int]
    document_id: int
    collection_id: int
    title: str
    section: str
    page: int | None
    start_offset: int
    end_offset: int
    text: str
    token_count: int | None = None  # known for a single chunk; a merged source is counted when budgeted

    def as_prompt(self) -> prompts.Source:
        return prompts.Source(
            number=self.number, title=self.title, section=self.section, page=self.page, text=self.text
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "chunk_id": self.chunk_ids[0],
            "chunk_ids": self.chunk_ids,
            "document_id": self.document_id,
            "title": self.title,
            "section": self.section,
            "page": self.page,
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
            "quote": self.text,
        }


@dataclass
class Answer:
    text: str
    outcome: str  # "answered", "not_found" or "failed"
    answer_mode: str
    sources: list[SourceRef]
    cited: list[int]
    trace: dict[str, Any] = field(default_factory=dict)


def rewrite_question(*, question: str, history: Sequence[tuple[str, str]], model: ChatModel | None) -> str:
    """A follow-up question made standalone from the conversation; unchanged for a first question."""
    if not history:
        return question
    if model is not None:
        try:
            completion = model.complete(
                prompts.rewrite_messages(history=list(history)[-6:], question=question), max_tokens=120
            )
        except LLMError as exc:
            logger.warning("rewriting the question with the LLM failed (%s); using the rule", exc.kind)
        else:
            rewritten = completion.text.strip().strip('"').strip()
            if rewritten:
                return rewritten.splitlines()[0][:1000]
    return rewrite_by_rule(question=question, history=history)


def rewrite_by_rule(*, question: str, history: Sequence[tuple[str, str]]) -> str:
    """Without a model: a short question, or one that points back ("it", "what about..."), gets the previous
    question in front of it, so that retrieval sees what it refers to."""
    previous = next((text for role, text in reversed(history) if role == "user"), "")
    if previous and (len(question.split()) <= 4 or _FOLLOW_UP.search(question)):
        return f"{previous} {question}"
    return question


def release_connection() -> None:
    """Give this thread's database connection back to the pool before a long wait without queries (the language
    model, the extractive answerer): a question then holds one of the process's few pooled connections only while
    it queries, not for its whole run. The next query takes one again. Without a pool, or inside a transaction,
    the connection is kept (closing would only cost a reconnect)."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


def build_sources(hits: list[SearchHit], *, token_budget: int, count_tokens: Any) -> list[SourceRef]:
    """Numbered sources from ranked hits: a chunk (or the same text) never twice, neighbouring chunks of one
    section merged into one source, and no more than `token_budget` tokens in all."""
    merged: list[SourceRef] = []
    document_of_text: dict[str, int] = {}
    for hit in hits:
        # The same passage in another document (one file in two of the searched collections) would be quoted
        # twice: the better-ranked one stands for both.
        text_key = " ".join(hit.text.split())
        if document_of_text.setdefault(text_key, hit.document_id) != hit.document_id:
            continue
        neighbour = next(
            (
                source
                for source in merged
                if source.document_id == hit.document_id
                and source.section == hit.section
                and hit.chunk_id not in source.chunk_ids
                and hit.start_offset <= source.end_offset + 1
                and hit.end_offset >= source.start_offset - 1
            ),
            None,
        )
        if any(hit.chunk_id in source.chunk_ids for source in merged):
            continue
        if neighbour is not None:
            neighbour.chunk_ids.append(hit.chunk_id)
            neighbour.start_offset = min(neighbour.start_offset, hit.start_offset)
            neighbour.end_offset = max(neighbour.end_offset, hit.end_offset)
            continue
        merged.append(
            SourceRef(
                number=0,
                chunk_ids=[hit.chunk_id],
                document_id=hit.document_id,
                collection_id=hit.collection_id,
                title=hit.title,
                section=hit.section,
                page=hit.page_number,
                start_offset=hit.start_offset,
                end_offset=hit.end_offset,
                text=hit.text,
                token_count=hit.token_count,
            )
        )
    _fill_merged_text(merged)
    kept: list[SourceRef] = []
    used = 0
    for source in merged:
        if len(source.text) > MAX_SOURCE_CHARS:
            cut = source.text.rfind(" ", MAX_SOURCE_CHARS // 2, MAX_SOURCE_CHARS)
            source.text = source.text[: cut if cut > 0 else MAX_SOURCE_CHARS].rstrip() + " …"
            source.token_count = None
        # A chunk's count was stored when it was chunked; tokenizing every source again cost more CPU per question
        # than the rest of building the prompt. It is trusted only as far as the text's length allows.
        stored = source.token_count if len(source.chunk_ids) == 1 else None
        tokens = max(stored or count_tokens(source.text), len(source.text) // CHARS_PER_TOKEN_FLOOR)
        if kept and used + tokens > token_budget:
            continue
        used += tokens
        source.number = len(kept) + 1
        kept.append(source)
    return kept


def _extractive_question(question: str, rewritten: str) -> tuple[str, str]:
    """What an extractive answer's sentences are chosen for, and the context that helps read it. A rewrite by
    rule puts the previous question in front of the new one, whose sentences would otherwise crowd the answer:
    the new question is answered, the rewrite lends what "it" refers to. A model's rewrite stands alone."""
    if rewritten.endswith(question):
        return question, rewritten
    return rewritten, ""


def _quoted_and_first(
    read: list[SourceRef], picked: list[extractive.Picked], *, first: int
) -> tuple[list[SourceRef], list[extractive.Picked]]:
    """The sources an extractive answer shows: the `first` ones read, as a language model would have been given,
    and any further one it quotes; numbered anew, and its quotes with them."""
    quoted = {item.source for item in picked}
    kept = [source for source in read if source.number <= first or source.number in quoted]
    numbers = {source.number: position for position, source in enumerate(kept, start=1)}
    for source in kept:
        source.number = numbers[source.number]
    return kept, [replace(item, source=numbers[item.source]) for item in picked]


def _fill_merged_text(sources: list[SourceRef]) -> None:
    """Merged sources read the document's own text between their first and last offset (no repeated overlap)."""
    multi = [source for source in sources if len(source.chunk_ids) > 1]
    if not multi:
        return
    texts = document_texts(document_ids={s.document_id for s in multi})
    for source in multi:
        text = texts.get(source.document_id)
        if text:
            source.text = text[source.start_offset : source.end_offset]


def answer(
    *,
    question: str,
    history: Sequence[tuple[str, str]],
    collections: Sequence[Collection],
    model: ChatModel | None = None,
    use_llm: bool = True,
    stream: bool = True,
    max_tokens: int | None = None,
) -> Iterator[PipelineEvent]:
    """Run the pipeline, yielding chat.events; the last one is always `Answered`, holding an `Answer`.
    With `stream` off (a caller that waits for the whole answer) the LLM is asked for one complete response
    instead of a stream of pieces, which costs both sides less. `max_tokens` caps the LLM's answer (default
    CHAT_LLM_MAX_TOKENS)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if use_llm and model is None:
        model = get_chat_model()
    trace: dict[str, Any] = {"question": question, "timings": timings}

    stage = time.perf_counter()
    if model is not None and history:
        release_connection()  # the rewrite waits for the language model
    rewritten = rewrite_question(question=question, history=history, model=model)
    timings["rewrite"] = time.perf_counter() - stage
    trace["rewritten_question"] = rewritten
    yield Rewritten(question=question, rewritten_question=rewritten)

    # The extractive answerer reads deeper than a language model is given (see extractive.READ_CHUNKS).
    limit = RETRIEVAL_LIMIT
    if model is None:
        limit = max(limit, extractive.READ_CHUNKS)
    result: SearchResult = search(
        query=rewritten,
        collections=collections,
        limit=limit,
        mode="hybrid",
        params=SearchParams(rerank=bool(settings.KNOWLEDGE_RERANKER_MODEL)),
    )
    timings.update({k: v for k, v in result.timings.items() if k in ("embed", "search", "rerank")})
    trace["retrieved"] = [
        {
            "chunk_id": hit.chunk_id,
            "document_id": hit.document_id,
            "score": round(hit.score, 6),
            "dense_rank": hit.dense_rank,
            "dense_similarity": None if hit.dense_similarity is None else round(hit.dense_similarity, 4),
            "lexical_rank": hit.lexical_rank,
            "lexical_score": None if hit.lexical_score is None else round(hit.lexical_score, 4),
            "rerank_score": hit.rerank_score,
        }
        for hit in result.hits
    ]
    best = result.best_similarity
    trace["best_similarity"] = best
    embedder = get_embedder(collections[0].embedding_model) if collections else None
    if not result.hits or best is None or best < MIN_SIMILARITY or embedder is None:
        trace["decision"] = "nothing relevant enough was retrieved; the LLM was not called"
        timings["total"] = time.perf_counter() - started
        yield Answered(answer=Answer(NOT_FOUND_TEXT, "not_found", "none", [], [], trace))
        return

    relevant_hits = [
        hit
        for hit in result.hits
        if hit.dense_similarity is None
        or hit.dense_similarity >= MIN_SOURCE_SIMILARITY
        or hit.lexical_rank is not None
    ]
    sources = build_sources(
        relevant_hits,
        token_budget=settings.CHAT_CONTEXT_TOKENS if model is not None else extractive.READ_TOKENS,
        count_tokens=embedder.tokenizer.count,
    )
    release_connection()  # what follows waits for the language model or computes the extractive answer

    stage = time.perf_counter()
    if model is None:
        read = sources
        asked, context = _extractive_question(question, rewritten)
        picked = extractive.pick_sentences(
            question=asked, context=context, sources=[s.as_prompt() for s in read], embedder=embedder
        )
        sources, picked = _quoted_and_first(read, picked, first=RETRIEVAL_LIMIT)
        yield Sources(sources=tuple(source.as_dict() for source in sources))
        text = extractive.compose(picked)
        timings["generate"] = time.perf_counter() - stage
        if not text:
            trace["decision"] = "no sentence of the sources was relevant enough"
            timings["total"] = time.perf_counter() - started
            yield Answered(answer=Answer(NOT_FOUND_TEXT, "not_found", "extractive", sources, [], trace))
            return
        yield Token(text=text)
        checked = check_citations(text, valid={s.number for s in sources})
        # No language model's tokens were spent: the counts are the embedding model's tokens of what was read
        # (the question and the sources) and of what was written, so that clients still see the answer's size.
        count = embedder.tokenizer.count
        trace["tokens"] = {
            "prompt": count(rewritten) + sum(s.token_count or count(s.text) for s in read),
            "completion": count(checked.text),
        }
        timings["total"] = time.perf_counter() - started
        yield Answered(answer=Answer(checked.text, "answered", "extractive", sources, checked.cited, trace))
        return

    yield Sources(sources=tuple(source.as_dict() for source in sources))
    usage = Usage()
    parts: list[str] = []
    # Tokens reach the reader with invalid citations already dropped; the final text is checked again in full.
    shown = CitationFilter(valid={s.number for s in sources})
    messages = prompts.answer_messages(question=rewritten, sources=[s.as_prompt() for s in sources])
    try:
        if stream:
            for piece in model.stream(messages, usage=usage, max_tokens=max_tokens):
                parts.append(piece)
                visible = shown.feed(piece)
                if visible:
                    yield Token(text=visible)
            if tail := shown.flush():
                yield Token(text=tail)
        else:
            # Nothing arrives until the whole answer is made, so the wait is for all of it, not the next piece.
            completion = model.complete(
                messages, max_tokens=max_tokens, timeout=settings.CHAT_LLM_ANSWER_TIMEOUT
            )
            usage = completion.usage
            parts.append(completion.text)
            if visible := shown.feed(completion.text) + shown.flush():
                yield Token(text=visible)
    except LLMError as exc:
        logger.error("the LLM failed while answering (%s): %s", exc.kind, exc.__cause__ or exc)
        timings["generate"] = time.perf_counter() - stage
        trace["error"] = {"kind": exc.kind, "message": exc.message}
        asked, context = _extractive_question(question, rewritten)
        fallback = extractive.compose(
            extractive.pick_sentences(
                question=asked, context=context, sources=[s.as_prompt() for s in sources], embedder=embedder
            ),
            label=extractive.FALLBACK_LABEL,
        )
        notice = f"**{exc.message}** The sources the answer would have used are listed below."
        text = f"{notice}\n\n{fallback}" if fallback else notice
        checked = check_citations(text, valid={s.number for s in sources})
        timings["total"] = time.perf_counter() - started
        yield Answered(answer=Answer(checked.text, "failed", model.name, sources, checked.cited, trace))
        return
    timings["generate"] = time.perf_counter() - stage
    trace["tokens"] = {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens}
    checked = check_citations("".join(parts), valid={s.number for s in sources})
    if checked.removed:
        trace["removed_citations"] = checked.removed
    timings["total"] = time.perf_counter() - started
    yield Answered(answer=Answer(checked.text, "answered", model.name, sources, checked.cited, trace))
