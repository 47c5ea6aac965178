"""The answerer that needs no language model: the sentences of the retrieved sources that answer the question,
each with its citation.

Every sentence of the sources is scored against the question: the embedding similarity of the two, plus the share
of the question's content words it holds, plus a little for the retrieval rank of its passage and for a document
that several passages come from. A sentence qualifies when it shares with the question words that say what is
asked (one distinctive word, or two common ones), or shares some word and is close in meaning: a sentence whose
only link is one common word ("use", "database") is never quoted, and one that shares no word is not even embedded
(the costly step). Nothing is quoted, and the answer is "not found", when the best sentence is not close enough.
Further sentences must score near the best one and say something new (maximal marginal relevance); neighbouring
sentences of one passage are quoted together as one span, which reads better than fragments. A follow-up is
answered about itself: its sentences are chosen against the question as asked, the conversation's rewritten
question only lending what "it" refers to.

The weights and thresholds were chosen on the PostgreSQL questions only (the Django and R sets are held out):
`manage.py evaluate_answers benchmarks/data/pgdocs-questions --corpus-from var/eval/pgdocs-beir --out-of-domain
benchmarks/data/out-of-domain/queries.jsonl`; benchmarks/README.md has the figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from chat.prompts import Source
from knowledge.embeddings import Embedder
from knowledge.selectors import text_sentences

LABEL = "*Extractive answer: no language model is configured, so these are the passages of your documents that best match the question.*"
# After the configured model failed: it is configured, so the label must not say otherwise.
FALLBACK_LABEL = "*The passages of your documents that best match the question:*"
# Retrieved chunks the answerer reads, more than a language model is given: its sentences are cheap to score, and
# the passage that answers is often below the eighth (a judged page among the first 8 chunks for 79% of the
# PostgreSQL questions, among the first 16 for 88%). Only the sources it quotes are added to the usual ones shown.
READ_CHUNKS = 16
READ_TOKENS = 5000
MAX_SENTENCES = 4
MAX_WORDS = 140
MIN_WORDS = 4
# How much saying something new counts against being relevant (maximal marginal relevance).
DIVERSITY = 0.5
LEXICAL_WEIGHT = 0.35
# The bonus of a sentence from the first source, falling as 1 / (1 + rank).
RANK_WEIGHT = 0.05
# The bonus per other source from the same document: a page retrieved several times is more likely the one that
# answers (citation precision 0.53 -> 0.62 on the PostgreSQL questions, the share citing a judged page 0.81 -> 0.80).
DOCUMENT_WEIGHT = 0.06
# A follow-up: the share of a sentence's similarity taken from the rewritten question rather than the one asked.
CONTEXT_WEIGHT = 0.4
# What a common word counts for, against 1 for a distinctive one: a sentence sharing words worth 1 qualifies.
COMMON_WEIGHT = 0.5
# The similarity at which a sentence sharing less than that still qualifies.
SEMANTIC_ALONE = 0.55
# Below this (similarity plus the lexical share, without the rank and document bonuses) the best sentence does not
# answer, and the question is declined: the PostgreSQL questions' best sentences score 0.58 and more, and all but
# three of the out-of-domain questions that get past retrieval's threshold score 0.43 or less.
MIN_ANSWER = 0.5
# Sentences after the first must score at least this share of the best one.
KEEP_SHARE = 0.7
# The pull of a sentence next to one already quoted, so that a passage is quoted as a span.
ADJACENT_BONUS = 0.05

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)
# Particles that make one word with the verb before them (not "in" or "out", more often prepositions).
_PARTICLES = frozenset(["up", "down"])
# Words that say little about what is asked, in questions about software manuals and in general.
_COMMON = frozenset(
    [
        "use",
        "used",
        "using",
        "make",
        "get",
        "set",
        "work",
        "need",
        "way",
        "new",
        "default",
        "value",
        "data",
        "database",
        "table",
        "file",
        "system",
        "run",
        "running",
        "change",
        "create",
        "show",
        "see",
        "find",
        "like",
        "also",
        "all",
        "any",
        "each",
        "other",
        "more",
        "most",
        "some",
        "only",
        "same",
        "many",
        "much",
        "possible",
        "example",
        "number",
        "name",
        "type",
        "case",
        "thing",
        "should",
        "could",
        "would",
        "want",
        "give",
        "take",
        "keep",
        "happen",
        "happens",
        "instead",
        "one",
        "two",
        "time",
        "good",
        "best",
        "better",
        "different",
    ]
)


@dataclass(frozen=True)
class Picked:
    source: int
    sentence: str
    score: float
    position: int = 0  # the sentence's place in its source: neighbours differ by one


@dataclass(frozen=True)
class _Candidate:
    source: int
    rank: int
    position: int
    text: str


_FENCE = re.compile(r"^\s*```")
_LIST_MARK = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")


def _terms(text: str) -> set[str]:
    """Content words, stemmed; a verb and its particle make one word, as their noun does ("back up", "backing
    up" and "backups" all give "backup"; "set up", "setup")."""
    words = re.findall(r"[a-z0-9_]+", text.lower())
    terms: set[str] = set()
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word in _STOPWORDS or word in _PARTICLES or len(word) < 2:
            continue
        terms.add(_stem(_stem(word) + following) if following in _PARTICLES else _stem(word))
    return terms


def _stem(word: str) -> str:
    """A crude stem that makes the usual English forms meet: restore, restores, restored, restoring; drop,
    dropped; use, uses, used, using; query, queries; index, indexes."""
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("es") and len(word) > 4:
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        # (Not the "ed" of need, speed, proceed.)
        if word.endswith(suffix) and len(word) - len(suffix) >= 2 and not word.endswith("eed"):
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    if len(word) >= 3 and word.endswith("e"):
        word = word[:-1]
    return word


_COMMON_TERMS = frozenset(_stem(word) for word in _COMMON)


def _prose(text: str) -> list[str | None]:
    """The prose units of a source (paragraphs, list items) in order, None where code, a heading or a table
    row (Markdown's, or the parser's cells joined by " | ") breaks the passage, so that the sentences around it
    are not neighbours."""
    units: list[str | None] = []
    paragraph: list[str] = []
    in_code = False

    def close() -> None:
        if paragraph:
            units.append(" ".join(paragraph))
            paragraph.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            close()
            in_code = not in_code
            units.append(None)
            continue
        stripped = line.strip()
        if in_code or stripped.startswith(("#", "|")) or stripped.count(" | ") >= 2:
            close()
            units.append(None)
        elif not stripped:
            close()
        elif _LIST_MARK.match(line):
            close()
            paragraph.append(_LIST_MARK.sub("", line, count=1).strip())
        else:
            paragraph.append(stripped)
    close()
    return units


def _candidates(sources: list[Source]) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    seen: set[str] = set()
    for rank, source in enumerate(sources):
        position = 0
        for unit in _prose(source.text):
            if unit is None:
                position += 1
                continue
            for sentence in text_sentences(text=unit):
                position += 1
                clean = " ".join(sentence.split())
                # A sentence that two sources share is a candidate once, under the better-ranked source.
                # (A fragment too short to quote, such as an option's name, parts its neighbours.)
                if len(clean.split()) >= MIN_WORDS and clean.lower() not in seen:
                    seen.add(clean.lower())
                    candidates.append(_Candidate(source.number, rank, position, clean))
    return candidates


def pick_sentences(
    *, question: str, sources: list[Source], embedder: Embedder, context: str = ""
) -> list[Picked]:
    """The sentences of `sources` that answer `question`, at most MAX_SENTENCES and about MAX_WORDS words; none
    when no sentence answers it well enough. `context` is the question rewritten against the conversation (a
    follow-up's "it" resolved): it counts for part of a sentence's similarity, but the words that must be shared
    are the question's own."""
    asked = _terms(question) or _terms(context)
    sharing = [(c, asked & _terms(c.text)) for c in _candidates(sources)]
    sharing = [(c, common) for c, common in sharing if common]
    if not sharing:
        return []
    candidates = [c for c, _ in sharing]
    vectors = embedder.embed_documents([candidate.text for candidate in candidates])
    semantic = vectors @ embedder.embed_query(question)
    if context and context.strip() != question.strip():
        semantic = (1 - CONTEXT_WEIGHT) * semantic + CONTEXT_WEIGHT * (
            vectors @ embedder.embed_query(context)
        )
    weight = {term: COMMON_WEIGHT if term in _COMMON_TERMS else 1.0 for term in asked}
    shared = np.array([sum(weight[term] for term in common) for _, common in sharing])
    answers = semantic + LEXICAL_WEIGHT * shared / sum(weight.values())
    qualifies = (shared >= 1.0) | (semantic >= SEMANTIC_ALONE)
    # Whether anything answers at all is judged on the sentences alone; which passage answers best, with the
    # retrieval's view of the passages too.
    if not np.any(qualifies & (answers >= MIN_ANSWER)):
        return []
    # The passages of one document are known by its title (a source carries no document id).
    titles = [source.title for source in sources]
    relevance = answers + np.array(
        [
            RANK_WEIGHT / (1 + c.rank) + DOCUMENT_WEIGHT * (titles.count(titles[c.rank]) - 1)
            for c in candidates
        ]
    )

    first = int(np.argmax(np.where(qualifies, relevance, -np.inf)))
    picked = [first]
    words = len(candidates[first].text.split())
    allowed = qualifies & (relevance >= KEEP_SHARE * relevance[first])
    while len(picked) < MAX_SENTENCES and words < MAX_WORDS:
        redundancy = np.max(vectors @ vectors[picked].T, axis=1)
        quoted = {(candidates[i].source, candidates[i].position) for i in picked}
        adjacent = np.array(
            [
                ADJACENT_BONUS
                if (c.source, c.position - 1) in quoted or (c.source, c.position + 1) in quoted
                else 0.0
                for c in candidates
            ]
        )
        scores = np.where(allowed, (1 - DIVERSITY) * relevance - DIVERSITY * redundancy + adjacent, -np.inf)
        scores[picked] = -np.inf
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):
            break
        picked.append(best)
        words += len(candidates[best].text.split())
    # Read in document order within each source, sources in the order of their best sentence.
    order: dict[int, int] = {}
    for i in picked:
        order.setdefault(candidates[i].source, len(order))
    picked.sort(key=lambda i: (order[candidates[i].source], candidates[i].position))
    return [
        Picked(
            source=candidates[i].source,
            sentence=candidates[i].text,
            score=float(relevance[i]),
            position=candidates[i].position,
        )
        for i in picked
    ]


def compose(picked: list[Picked], *, label: str = LABEL) -> str:
    """Markdown: the label, then one bullet per passage (neighbouring sentences of a source joined into one
    span), each ending with its citation."""
    if not picked:
        return ""
    spans: list[list[Picked]] = []
    for item in picked:
        if spans and spans[-1][-1].source == item.source and spans[-1][-1].position + 1 == item.position:
            spans[-1].append(item)
        else:
            spans.append([item])
    lines = [label, ""]
    lines += [f"- {' '.join(i.sentence.strip() for i in span)} [{span[0].source}]" for span in spans]
    return "\n".join(lines)
