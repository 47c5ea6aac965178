"""The answerer that needs no language model: the sentences of the retrieved sources that best answer the
question, each with its citation, picked for relevance and for saying different things."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from chat.prompts import Source
from knowledge.chunking import split_sentences
from knowledge.embeddings import Embedder

LABEL = "*Extractive answer: no language model is configured, so these are the passages of your documents that best match the question.*"
# After the configured model failed: it is configured, so the label must not say otherwise.
FALLBACK_LABEL = "*The passages of your documents that best match the question:*"
MAX_SENTENCES = 4
MAX_WORDS = 140
MIN_WORDS = 4
# How much saying something new counts against being relevant (maximal marginal relevance).
DIVERSITY = 0.3
LEXICAL_WEIGHT = 0.35

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
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


@dataclass(frozen=True)
class Picked:
    source: int
    sentence: str
    score: float


def _terms(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9_]+", text.lower())
    return {_stem(word) for word in words if word not in _STOPWORDS and len(word) > 1}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def pick_sentences(*, question: str, sources: list[Source], embedder: Embedder) -> list[Picked]:
    """The best sentences for `question`, at most MAX_SENTENCES and about MAX_WORDS words."""
    candidates: list[tuple[int, int, str]] = []  # (source number, rank of the source, sentence)
    seen: set[str] = set()
    for rank, source in enumerate(sources):
        for sentence in split_sentences(source.text):
            clean = " ".join(sentence.split())
            # A sentence that two sources share is a candidate once, under the better-ranked source.
            if len(clean.split()) >= MIN_WORDS and clean.lower() not in seen:
                seen.add(clean.lower())
                candidates.append((source.number, rank, clean))
    if not candidates:
        return []
    question_vector = embedder.embed_query(question)
    sentence_vectors = embedder.embed_documents([sentence for _, _, sentence in candidates])
    similarity = sentence_vectors @ question_vector
    question_terms = _terms(question)
    lexical = np.array(
        [
            len(question_terms & _terms(sentence)) / max(len(question_terms), 1)
            for _, _, sentence in candidates
        ]
    )
    rank_bonus = np.array([0.05 / (1 + rank) for _, rank, _ in candidates])
    relevance = similarity + LEXICAL_WEIGHT * lexical + rank_bonus

    picked: list[int] = []
    words = 0
    while len(picked) < MAX_SENTENCES and words < MAX_WORDS:
        if picked:
            redundancy = np.max(sentence_vectors @ sentence_vectors[picked].T, axis=1)
            scores = (1 - DIVERSITY) * relevance - DIVERSITY * redundancy
        else:
            scores = relevance.copy()
        scores[picked] = -np.inf
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]) or (picked and relevance[best] < 0.5 * relevance[picked[0]]):
            break
        picked.append(best)
        words += len(candidates[best][2].split())
    # Read in document order within each source, sources in the order of their best sentence.
    order = {candidates[i][0]: position for position, i in enumerate(picked)}
    picked.sort(key=lambda i: (order[candidates[i][0]], i))
    return [
        Picked(source=candidates[i][0], sentence=candidates[i][2], score=float(relevance[i])) for i in picked
    ]


def compose(picked: list[Picked], *, label: str = LABEL) -> str:
    """Markdown: the label, then one bullet per passage, each ending with its citation."""
    if not picked:
        return ""
    lines = [label, ""]
    for item in picked:
        sentence = item.sentence.rstrip()
        lines.append(f"- {sentence} [{item.source}]")
    return "\n".join(lines)
