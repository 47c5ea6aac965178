"""Answer evaluation on BEIR-layout data sets: every judged question through the real answer service, each in a
fresh conversation over the scratch collection, and what its answer cites scored against the judgments.

The retrieval side (reading the set, indexing the corpus) is `knowledge.evaluation`'s; this module only asks and
scores. Per question it records which sources the stored answer cites (as judged ids), which of its sentences carry
a citation of a judged-relevant source, whether it abstained, and the wall time of the whole answer.

An answer abstains when the pipeline found nothing to answer from (outcome "not_found") or, with a language
model, when the model said the knowledge base does not contain the answer and cited nothing.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model

from chat import extractive, services
from chat.citations import check_citations
from chat.events import Asked
from chat.models import Message
from core.errors import InvalidInput
from knowledge.evaluation import CorpusImported, jsonl_rows, percentile

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The staff user the questions are asked as; created on the first run, reused afterwards.
EVALUATION_USERNAME = "answer-evaluation"
# What a language model says when its sources do not hold the answer (the system prompt asks for the first).
_REFUSAL = re.compile(
    r"(does not|doesn't|do not|don't) (contain|include|cover|mention|say|provide)|no information|"
    r"(cannot|can't|unable to) (answer|find)|not (found|covered|mentioned) in",
    re.IGNORECASE,
)
# A sentence ends at . ! or ? followed by space, unless what follows is its citation ("... in use. [1]").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?!\[\d)")


class EvaluationUserError(InvalidInput):
    """The evaluation's user exists but is not staff."""


@dataclass(frozen=True)
class QuestionResult:
    query_id: str
    question: str
    outcome: str  # the stored answer's: "answered", "not_found" or "failed"
    abstained: bool
    cited: list[str]  # the judged id of every cited source, by source number (one per source)
    cited_relevant: int  # how many of them are judged relevant
    sentences: int  # sentences of the answer (the extractive label left out)
    sentences_relevant: int  # of them, those citing a judged-relevant source
    latency_ms: float
    answer: str
    best_similarity: float | None = (
        None  # the retrieved chunks' best dense similarity, from the answer's trace
    )

    @property
    def cites_relevant(self) -> bool:
        return self.cited_relevant > 0


@dataclass
class AnswerRun:
    """One set's questions; the relevance figures are meaningful only for a judged set."""

    name: str
    results: list[QuestionResult]

    @property
    def questions(self) -> int:
        return len(self.results)

    @property
    def cites_relevant_share(self) -> float:
        """Questions whose answer cites at least one judged-relevant document, over all questions."""
        return _share(sum(r.cites_relevant for r in self.results), len(self.results))

    @property
    def precision_micro(self) -> float:
        """Cited sources on judged-relevant documents over all cited sources, pooled over the questions."""
        return _share(sum(r.cited_relevant for r in self.results), sum(len(r.cited) for r in self.results))

    @property
    def precision_macro(self) -> float:
        """The same per question, averaged over the questions whose answer cites anything."""
        citing = [r.cited_relevant / len(r.cited) for r in self.results if r.cited]
        return sum(citing) / len(citing) if citing else math.nan

    @property
    def sentences_relevant_share(self) -> float:
        """The answers' sentences that cite a judged-relevant source, over all their sentences (pooled)."""
        return _share(sum(r.sentences_relevant for r in self.results), sum(r.sentences for r in self.results))

    @property
    def abstained_share(self) -> float:
        return _share(sum(r.abstained for r in self.results), len(self.results))

    @property
    def failed(self) -> int:
        return sum(r.outcome == Message.Outcome.FAILED for r in self.results)

    @property
    def latency_p50_ms(self) -> float:
        return percentile([r.latency_ms for r in self.results], 50)

    @property
    def latency_p95_ms(self) -> float:
        return percentile([r.latency_ms for r in self.results], 95)

    def summary(self) -> dict[str, float | int]:
        return {
            "questions": self.questions,
            "cites_relevant": self.cites_relevant_share,
            "citation_precision_micro": self.precision_micro,
            "citation_precision_macro": self.precision_macro,
            "sentences_from_relevant": self.sentences_relevant_share,
            "abstained": self.abstained_share,
            "failed": self.failed,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
        }


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def evaluation_user_get_or_create() -> User:
    """The staff user the evaluation asks as (EVALUATION_USERNAME), created without a usable password.

    Raises EvaluationUserError when a user of that name exists and is not staff: it is never promoted."""
    user, created = get_user_model().objects.get_or_create(
        username=EVALUATION_USERNAME, defaults={"is_staff": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if not user.is_staff or not user.is_active:
        raise EvaluationUserError(
            f"The user {EVALUATION_USERNAME!r} exists but is not an active staff user; the evaluation asks as "
            "staff so that it may read its restricted scratch collection."
        )
    return user


def questions_read(path: Path) -> dict[str, str]:
    """The questions of a queries.jsonl file without judgments (an out-of-domain set). Raises DatasetError."""
    return {str(row["_id"]): str(row["text"]) for row in jsonl_rows(path, text=True)}


def answers_run(
    *,
    name: str,
    questions: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    imported: CorpusImported,
    user: User,
    on_question: Callable[[int, int], None] | None = None,
) -> AnswerRun:
    """Ask every question through `chat.services.question_ask`, each in a new conversation over the scratch
    collection, and score the stored answer against `qrels` (empty for an out-of-domain set).

    Latency is the wall time of the whole answer (rewrite, retrieval, answering, storing), after one untimed
    warm-up question. Each conversation is deleted once its answer is read, so that repeated runs leave nothing
    behind (and the asker's rate limit, which counts stored questions, never fills up)."""

    def ask(question: str) -> Asked:
        return services.question_ask(user=user, question=question, collection_ids=[imported.collection.pk])

    if questions:
        warm_up = ask(next(iter(questions.values())))  # loads the models outside the timings
        services.conversation_delete(conversation=warm_up.conversation)
    results: list[QuestionResult] = []
    for done, (query_id, question) in enumerate(questions.items(), start=1):
        started = time.perf_counter()
        asked = ask(question)
        latency_ms = (time.perf_counter() - started) * 1000
        results.append(
            answer_score(
                query_id=query_id,
                question=question,
                answer=asked.answer,
                relevance=qrels.get(query_id, {}),
                imported=imported,
                latency_ms=latency_ms,
            )
        )
        services.conversation_delete(conversation=asked.conversation)
        if on_question is not None:
            on_question(done, len(questions))
    return AnswerRun(name=name, results=results)


def answer_score(
    *,
    query_id: str,
    question: str,
    answer: Message,
    relevance: Mapping[str, int],
    imported: CorpusImported,
    latency_ms: float,
) -> QuestionResult:
    """What a stored answer cites, and how much of it the judgments support."""
    sources = {
        citation.number: imported.judged_id(citation.document_id, citation.page_number)
        for citation in answer.citations.all()
        if citation.cited and citation.document_id is not None
    }

    def relevant(number: int) -> bool:
        return number in sources and relevance.get(sources[number], 0) > 0

    cited = [sources[number] for number in sorted(sources)]
    sentences = answer_sentences(answer.text, numbers=set(sources))
    return QuestionResult(
        query_id=query_id,
        question=question,
        outcome=answer.outcome,
        abstained=answer_abstained(outcome=answer.outcome, text=answer.text, cited=bool(cited)),
        cited=cited,
        cited_relevant=sum(relevance.get(judged, 0) > 0 for judged in cited),
        sentences=len(sentences),
        sentences_relevant=sum(any(relevant(n) for n in numbers) for _, numbers in sentences),
        latency_ms=latency_ms,
        answer=answer.text,
        best_similarity=answer.trace.get("best_similarity"),
    )


def answer_abstained(*, outcome: str, text: str, cited: bool) -> bool:
    """Whether an answer says the knowledge base does not hold the answer."""
    if outcome == Message.Outcome.NOT_FOUND:
        return True
    return outcome == Message.Outcome.ANSWERED and not cited and bool(_REFUSAL.search(text))


def answer_sentences(text: str, *, numbers: set[int]) -> list[tuple[str, list[int]]]:
    """The sentences of an answer with the source numbers (among `numbers`) each cites. A sentence without a
    citation of its own takes the next one in its line ("First. Second [1]." cites 1 twice); the extractive
    label is left out, as are headings and lines without a word."""
    sentences: list[tuple[str, list[int]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line in (extractive.LABEL, extractive.FALLBACK_LABEL) or line.startswith("#"):
            continue
        body = line.lstrip("-*•>").strip()
        pieces = [piece for piece in _SENTENCE_END.split(body) if re.search(r"[A-Za-z]{2}", piece)]
        pending: list[str] = []
        for piece in pieces:
            cites = check_citations(piece, valid=numbers).cited
            pending.append(piece)
            if cites:
                sentences.extend((sentence, cites) for sentence in pending)
                pending = []
        sentences.extend((sentence, []) for sentence in pending)
    return sentences
