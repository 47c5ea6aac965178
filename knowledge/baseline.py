"""The naive retriever that `evaluate_retrieval` measures the product against, computed in the same run.

Every document is cut into fixed windows of 180 whitespace-separated words that overlap by 40, each read as
"{title}. {window}". Dense: the same embedding model as the product, cosine similarity. Lexical: Okapi BM25
(k1 = 1.5, b = 0.75, idf ln(1 + (N - n + 0.5) / (n + 0.5)), lower-cased `\\w+` tokens) on the same windows.
Fused: reciprocal rank fusion (k = 60) of the two window rankings. A document scores as its best window.

It runs in memory, in NumPy, outside PostgreSQL: nothing of the product's chunking, indexing or SQL is in it.
The window vectors are cached on disk by the hash of the windows and the model, so a rerun embeds only the
question texts.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from knowledge.embeddings import Embedder

BaselineMode = Literal["baseline-bm25", "baseline-dense", "baseline-rrf"]
BASELINE_MODES: tuple[BaselineMode, ...] = ("baseline-bm25", "baseline-dense", "baseline-rrf")
WINDOW_WORDS = 180
OVERLAP_WORDS = 40
BM25_K1 = 1.5
BM25_B = 0.75
RRF_K = 60
_TOKEN = re.compile(r"\w+")


def windows(text: str, *, title: str) -> list[str]:
    """The windows of one document, its title in front of each ("{title}. {window}")."""
    words = text.split()
    step = WINDOW_WORDS - OVERLAP_WORDS
    starts = range(0, max(len(words) - OVERLAP_WORDS, 1), step)
    return [f"{title}. {' '.join(words[start : start + WINDOW_WORDS])}" for start in starts]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed list of texts, with postings in NumPy arrays."""

    def __init__(self, texts: Sequence[str]) -> None:
        postings: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        lengths = np.zeros(len(texts), dtype=np.float64)
        for index, text in enumerate(texts):
            counts = Counter(tokens(text))
            lengths[index] = sum(counts.values())
            for term, count in counts.items():
                rows, frequencies = postings[term]
                rows.append(index)
                frequencies.append(count)
        self.size = len(texts)
        average = float(lengths.mean()) if len(texts) else 0.0
        self._norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / (average or 1.0))
        self._postings = {
            term: (np.asarray(rows, dtype=np.int64), np.asarray(freqs, dtype=np.float64))
            for term, (rows, freqs) in postings.items()
        }

    def scores(self, query: str) -> NDArray[np.float64]:
        scores = np.zeros(self.size, dtype=np.float64)
        for term in set(tokens(query)):
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows, frequencies = posting
            idf = math.log(1 + (self.size - len(rows) + 0.5) / (len(rows) + 0.5))
            scores[rows] += idf * frequencies * (BM25_K1 + 1) / (frequencies + self._norm[rows])
        return scores


@dataclass
class Baseline:
    """The windows of a corpus, their owners, their BM25 index and their vectors."""

    owners: NDArray[np.int64]  # window index -> document index
    documents: list[str]  # document index -> judged id
    bm25: BM25
    vectors: NDArray[np.float32]
    embedder: Embedder

    def rank(self, mode: BaselineMode, query: str, *, depth: int = 100) -> list[str]:
        """The first `depth` documents for `query`, each ranked by its best window."""
        if mode == "baseline-bm25":
            window_scores = self.bm25.scores(query)
            window_scores[window_scores <= 0] = -np.inf  # a window with none of the words is not a match
        else:
            query_vector = self.embedder.embed_query(query)
            dense = self.vectors @ query_vector
            if mode == "baseline-dense":
                window_scores = dense.astype(np.float64)
            else:
                window_scores = _rrf(dense.astype(np.float64), self.bm25.scores(query))
        best = np.full(len(self.documents), -np.inf)
        np.maximum.at(best, self.owners, window_scores)
        order = np.argsort(-best, kind="stable")[:depth]
        return [self.documents[index] for index in order if np.isfinite(best[index])]


def _rrf(dense: NDArray[np.float64], lexical: NDArray[np.float64]) -> NDArray[np.float64]:
    fused = 1.0 / (RRF_K + _ranks(dense))
    matched = lexical > 0
    fused[matched] += 1.0 / (RRF_K + _ranks(np.where(matched, lexical, -np.inf))[matched])
    return fused


def _ranks(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks, highest score first (ties in index order)."""
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def baseline_build(
    *,
    documents: Mapping[str, tuple[str, str]],
    embedder: Embedder,
    cache_dir: Path | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Baseline:
    """The baseline of `documents` (judged id -> (title, text)); window vectors from `cache_dir` when cached."""
    texts: list[str] = []
    owners: list[int] = []
    ids = list(documents)
    for index, doc_id in enumerate(ids):
        title, text = documents[doc_id]
        for window in windows(text, title=title):
            texts.append(window)
            owners.append(index)
    digest = hashlib.sha256(embedder.name.encode())
    for text in texts:
        digest.update(b"\0" + text.encode("utf-8", "surrogatepass"))
    cached = cache_dir / f"baseline-{digest.hexdigest()[:24]}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        vectors = np.load(cached)
    else:
        parts = []
        step = 256
        for start in range(0, len(texts), step):
            parts.append(embedder.embed_documents(texts[start : start + step]))
            if on_progress is not None:
                on_progress(min(start + step, len(texts)), len(texts))
        vectors = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".partial.npy")
            np.save(partial, vectors)
            partial.replace(cached)
    return Baseline(
        owners=np.asarray(owners, dtype=np.int64),
        documents=ids,
        bm25=BM25(texts),
        vectors=np.asarray(vectors, dtype=np.float32),
        embedder=embedder,
    )
