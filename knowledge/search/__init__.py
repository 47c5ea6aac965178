"""Hybrid retrieval in PostgreSQL: pgvector HNSW (cosine) and full-text search, fused in SQL.

The lexical half runs first; the dense half (HNSW) then runs with the lexical ranking passed in, and the two
are fused by reciprocal rank fusion (default) or by a weighted sum of min-max normalized scores, each cut to
`candidates` rows. The lexical half ranks only the chunks that hold the question's rarer words (see
`narrowing.lexical_candidates`), so its cost stays bounded as the collection grows.
Collection (permission) filters and the active-embedding-model filter are part of both halves; pgvector's
iterative index scan keeps a restrictive filter from starving the dense list. An optional reranker re-scores
the fused candidates.

`search` runs here; `params` holds the modes, the measured tuning and the per-call knobs (`SearchParams`),
`narrowing` the word-rarity heuristic, `sql` the statements and `rerank` the reranking stage.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from knowledge.embeddings import get_embedder
from knowledge.models import Collection
from knowledge.search import narrowing, sql
from knowledge.search import params as tuning
from knowledge.search.narrowing import forget_lexeme_statistics
from knowledge.search.params import MODES, Fusion, InvalidSearch, Mode, SearchParams
from knowledge.search.rerank import Reranker, configured_reranker, get_reranker

__all__ = [
    "MODES",
    "Fusion",
    "InvalidSearch",
    "Mode",
    "Reranker",
    "SearchHit",
    "SearchParams",
    "SearchResult",
    "configured_reranker",
    "forget_lexeme_statistics",
    "get_reranker",
    "query_shape",
    "search",
]


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    collection_id: int
    position: int
    title: str
    source_name: str
    section: str
    page_number: int | None
    start_offset: int
    end_offset: int
    text: str
    score: float
    token_count: int | None = None  # of `text`, counted with the model's tokenizer when it was chunked
    dense_rank: int | None = None
    dense_similarity: float | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None
    rerank_score: float | None = None


@dataclass
class SearchResult:
    query: str
    mode: Mode
    hits: list[SearchHit]
    timings: dict[str, float] = field(default_factory=dict)
    reranked: bool = False
    # The tsquery that chose the chunks the lexical side ranked, when it was narrowed (see lexical_candidates).
    lexical_candidates: str | None = None

    @property
    def best_similarity(self) -> float | None:
        values = [hit.dense_similarity for hit in self.hits if hit.dense_similarity is not None]
        return max(values) if values else None


def search(
    *,
    query: str,
    collections: Iterable[Collection],
    limit: int = 10,
    mode: Mode = "hybrid",
    params: SearchParams | None = None,
) -> SearchResult:
    """Rank the chunks of `collections` for `query`; raises InvalidSearch for a bad mode or limit."""
    started = time.perf_counter()
    params = params if params is not None else SearchParams()
    query = " ".join(query.split())
    if mode not in MODES:
        raise InvalidSearch(f"Unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}.")
    if not 1 <= limit <= 200:
        raise InvalidSearch("limit must be between 1 and 200.")
    fusion = params.fusion or tuning.FUSION
    if fusion not in ("rrf", "weighted"):
        raise InvalidSearch(f"Unknown fusion {fusion!r}; use rrf or weighted.")
    result = SearchResult(query=query, mode=mode, hits=[])
    sentence = query_shape(query)
    groups: dict[str, list[int]] = defaultdict(list)
    for collection in collections:
        groups[collection.embedding_model].append(collection.pk)
    if not query or not groups:
        return result
    rerank = params.rerank
    reranker = params.reranker
    if rerank and reranker is None:
        reranker = configured_reranker()
    pool = max(limit, params.candidates or tuning.SEARCH_CANDIDATES)
    if reranker is not None and rerank:
        pool = max(pool, tuning.RERANK_CANDIDATES)

    vectors: dict[str, list[float]] = {}
    if mode != "lexical":
        embed_started = time.perf_counter()
        vectors = {name: get_embedder(name).embed_query(query).tolist() for name in groups}
        result.timings["embed"] = time.perf_counter() - embed_started

    search_started = time.perf_counter()
    scope, bound = sql.model_scopes(groups)
    bound.update(
        pool=pool,
        limit=pool if rerank and reranker is not None else limit,
        text=query,
        ts_config=settings.KNOWLEDGE_TEXT_SEARCH_CONFIG,
        rrf_k=tuning.RRF_K,
        ts_norm=tuning.TS_RANK_NORMALIZATION,
        w_dense=(params.dense_weight if params.dense_weight is not None else tuning.HYBRID_DENSE_WEIGHT)
        if mode == "hybrid"
        else float(mode == "dense"),
        w_lexical=(params.lexical_weight if params.lexical_weight is not None else _lexical_weight(sentence))
        if mode == "hybrid"
        else float(mode == "lexical"),
        evidence=sentence * tuning.DOCUMENT_EVIDENCE,
    )
    budget = tuning.LEXICAL_CANDIDATE_BUDGET
    narrow = mode != "dense" and tuning.LEXICAL_OPERATOR != "and"
    narrow = narrow and budget > 0
    weigh = mode != "dense"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            sql.TRANSACTION_SETTINGS,
            {
                "ef": str(params.ef_search or tuning.HNSW_EF_SEARCH),
                "tuples": str(tuning.HNSW_MAX_SCAN_TUPLES),
                "page_cost": str(tuning.RANDOM_PAGE_COST),
                "parse": narrow or weigh,
                "ts_config": settings.KNOWLEDGE_TEXT_SEARCH_CONFIG,
                "text": query,
            },
        )
        parsed_query = cursor.fetchone()[-1]
        lexical_ids: list[int] = []
        lexical_scores: list[float] = []
        if mode != "dense":
            statistics = narrowing.lexeme_statistics(cursor) if parsed_query else None
            if narrow and parsed_query:
                result.lexical_candidates = narrowing.lexical_candidates(parsed_query, statistics, budget)
            lexical_started = time.perf_counter()
            terms = (
                narrowing.weighted_terms(cursor, parsed_query, statistics) if weigh and parsed_query else None
            )
            cursor.execute(
                sql.lexical_sql(
                    scope, narrowed=result.lexical_candidates is not None, weighted=terms is not None
                ),
                {
                    **bound,
                    "candidates": result.lexical_candidates,
                    "term_queries": [term for term, _ in terms or ()],
                    "term_weights": [weight for _, weight in terms or ()],
                },
            )
            for chunk_id, score in cursor.fetchall():
                lexical_ids.append(chunk_id)
                lexical_scores.append(score)
            result.timings["lexical"] = time.perf_counter() - lexical_started
        if mode != "lexical":
            for index, model_name in enumerate(sorted(groups)):
                bound[f"vector_{index}"] = sql.vector_literal(vectors[model_name])
        bound.update(lexical_ids=lexical_ids, lexical_scores=lexical_scores)
        cursor.execute(sql.fusion_sql(mode=mode, fusion=fusion, groups=groups, scope=scope), bound)
        rows = cursor.fetchall()
    result.timings["search"] = time.perf_counter() - search_started
    result.hits = [_hit(row) for row in rows]

    if rerank and reranker is not None and result.hits:
        rerank_started = time.perf_counter()
        scores = reranker.score(query, [hit.text for hit in result.hits])
        reranked = sorted(zip(result.hits, scores, strict=True), key=lambda pair: pair[1], reverse=True)
        result.hits = [replace(hit, score=score, rerank_score=score) for hit, score in reranked[:limit]]
        result.reranked = True
        result.timings["rerank"] = time.perf_counter() - rerank_started
    result.timings["total"] = time.perf_counter() - started
    return result


_WORD = re.compile(r"\w+")


def query_shape(query: str) -> float:
    """How much `query` reads as a sentence rather than a term: 0 up to TERM_WORDS words, 1 from SENTENCE_WORDS.

    Measured on the PostgreSQL manual (its index terms and the natural questions): a term is best found by its
    words and by the one chunk that holds them (a definition), a question by its meaning, and by pages that
    answer it in more than one place."""
    words = len(_WORD.findall(query))
    term_words, sentence_words = tuning.TERM_WORDS, tuning.SENTENCE_WORDS
    return min(1.0, max(0.0, (words - term_words) / (sentence_words - term_words)))


def _lexical_weight(sentence: float) -> float:
    """The lexical list's weight in the fusion: HYBRID_LEXICAL_WEIGHT for a sentence, up to
    HYBRID_TERM_LEXICAL_WEIGHT for a term."""
    term_weight = tuning.HYBRID_TERM_LEXICAL_WEIGHT
    return float(term_weight + (tuning.HYBRID_LEXICAL_WEIGHT - term_weight) * sentence)


def _hit(row: tuple[Any, ...]) -> SearchHit:
    (
        chunk_id,
        score,
        dense_rank,
        distance,
        lexical_rank,
        lexical_score,
        document_id,
        collection_id,
        position,
        text,
        section,
        page_number,
        start_offset,
        end_offset,
        token_count,
        title,
        source_name,
    ) = row
    return SearchHit(
        chunk_id=chunk_id,
        document_id=document_id,
        collection_id=collection_id,
        position=position,
        title=title,
        source_name=source_name,
        section=section,
        page_number=page_number,
        start_offset=start_offset,
        end_offset=end_offset,
        text=text,
        score=float(score),
        token_count=token_count,
        dense_rank=dense_rank,
        dense_similarity=None if distance is None else 1.0 - float(distance),
        lexical_rank=lexical_rank,
        lexical_score=None if lexical_score is None else float(lexical_score),
    )
