"""Hybrid retrieval in PostgreSQL: pgvector HNSW (cosine) and full-text search, fused in one round trip.

Dense and lexical candidates are each cut to `candidates` rows inside SQL, then fused by reciprocal rank fusion
(default) or by a weighted sum of min-max normalized scores. The lexical side ranks only the chunks that hold one
of the question's rarer words (see `_lexical_candidates`), so its cost stays bounded as the collection grows. Collection (permission) filters and the
active-embedding-model filter are part of both scans; pgvector's iterative index scan keeps a restrictive filter
from starving the dense list. An optional reranker re-scores the fused candidates.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from config.errors import InvalidInput
from knowledge.embeddings import get_embedder
from knowledge.models import Collection

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["rrf", "weighted"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")


class InvalidSearch(InvalidInput):
    """The search request is not valid."""


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

    @property
    def best_similarity(self) -> float | None:
        values = [hit.dense_similarity for hit in self.hits if hit.dense_similarity is not None]
        return max(values) if values else None


class Reranker(Protocol):
    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder loaded from a local folder (never from a hub)."""

    def __init__(self, path: Path) -> None:
        from sentence_transformers import CrossEncoder

        self.name = str(path)
        self._model = CrossEncoder(str(path), device=str(settings.KNOWLEDGE_EMBEDDING_DEVICE))

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        scores = self._model.predict([(query, text) for text in texts], show_progress_bar=False)
        return [float(value) for value in np.asarray(scores).reshape(-1)]


@cache
def get_reranker(path: str) -> Reranker:
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidSearch(f"The reranker model folder {path!r} does not exist.")
    return CrossEncoderReranker(folder)


def configured_reranker() -> Reranker | None:
    path = str(settings.KNOWLEDGE_RERANKER_MODEL or "")
    return get_reranker(path) if path else None


def search(
    *,
    query: str,
    collections: Iterable[Collection],
    limit: int = 10,
    mode: Mode = "hybrid",
    fusion: Fusion | None = None,
    candidates: int | None = None,
    rerank: bool = False,
    reranker: Reranker | None = None,
    dense_weight: float | None = None,
    lexical_weight: float | None = None,
    ef_search: int | None = None,
) -> SearchResult:
    """Rank the chunks of `collections` for `query`; raises InvalidSearch for a bad mode or limit."""
    started = time.perf_counter()
    query = " ".join(query.split())
    if mode not in MODES:
        raise InvalidSearch(f"Unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}.")
    if not 1 <= limit <= 200:
        raise InvalidSearch("limit must be between 1 and 200.")
    fusion = fusion or settings.KNOWLEDGE_FUSION
    if fusion not in ("rrf", "weighted"):
        raise InvalidSearch(f"Unknown fusion {fusion!r}; use rrf or weighted.")
    result = SearchResult(query=query, mode=mode, hits=[])
    groups: dict[str, list[int]] = defaultdict(list)
    for collection in collections:
        groups[collection.embedding_model].append(collection.pk)
    if not query or not groups:
        return result
    if rerank and reranker is None:
        reranker = configured_reranker()
    pool = max(limit, candidates or settings.KNOWLEDGE_SEARCH_CANDIDATES)
    if reranker is not None and rerank:
        pool = max(pool, settings.KNOWLEDGE_RERANK_CANDIDATES)

    vectors: dict[str, list[float]] = {}
    if mode in ("dense", "hybrid"):
        embed_started = time.perf_counter()
        for model_name in groups:
            vectors[model_name] = get_embedder(model_name).embed_query(query).tolist()
        result.timings["embed"] = time.perf_counter() - embed_started

    search_started = time.perf_counter()
    sql, params = _build_sql(
        mode=mode,
        fusion=fusion,
        groups=groups,
        vectors=vectors,
        query=query,
        pool=pool,
        limit=pool if rerank and reranker is not None else limit,
        dense_weight=settings.KNOWLEDGE_HYBRID_DENSE_WEIGHT if dense_weight is None else dense_weight,
        lexical_weight=settings.KNOWLEDGE_HYBRID_LEXICAL_WEIGHT if lexical_weight is None else lexical_weight,
    )
    prune = mode != "dense" and settings.KNOWLEDGE_LEXICAL_OPERATOR != "and"
    prune = prune and settings.KNOWLEDGE_LEXICAL_CANDIDATE_BUDGET > 0
    with transaction.atomic(), connection.cursor() as cursor:
        # One round trip for the settings (local to this transaction) and the question's lexemes.
        # random_page_cost: PostgreSQL's default (4) prices an HNSW scan above reading and sorting a whole
        # 10k-chunk collection, which is 10x slower when the data is in memory or on SSD.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %(ef)s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %(tuples)s, true), "
            "set_config('random_page_cost', %(page_cost)s, true), "
            "CASE WHEN %(prune)s THEN websearch_to_tsquery(%(ts_config)s::regconfig, %(text)s)::text END",
            {
                "ef": str(ef_search or settings.KNOWLEDGE_HNSW_EF_SEARCH),
                "tuples": str(settings.KNOWLEDGE_HNSW_MAX_SCAN_TUPLES),
                "page_cost": str(settings.KNOWLEDGE_RANDOM_PAGE_COST),
                "prune": prune,
                "ts_config": settings.KNOWLEDGE_TEXT_SEARCH_CONFIG,
                "text": query,
            },
        )
        parsed_query = cursor.fetchone()[-1]
        if prune and parsed_query:
            candidates_query = _lexical_candidates(
                parsed_query, _lexeme_statistics(cursor), settings.KNOWLEDGE_LEXICAL_CANDIDATE_BUDGET
            )
            if candidates_query is not None:
                params["lexical_candidates"] = candidates_query
                sql = sql.replace(
                    "c.search_vector @@ q.query", "c.search_vector @@ %(lexical_candidates)s::tsquery"
                )
                result.timings["lexical_terms_kept"] = float(candidates_query.count("|") + 1)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    result.timings["search"] = time.perf_counter() - search_started
    result.hits = [_hit(row) for row in rows]

    if rerank and reranker is not None and result.hits:
        rerank_started = time.perf_counter()
        scores = reranker.score(query, [hit.text for hit in result.hits])
        reranked = sorted(zip(result.hits, scores, strict=True), key=lambda pair: pair[1], reverse=True)
        result.hits = [_replace(hit, score=score, rerank_score=score) for hit, score in reranked[:limit]]
        result.reranked = True
        result.timings["rerank"] = time.perf_counter() - rerank_started
    result.timings["total"] = time.perf_counter() - started
    return result


def _replace(hit: SearchHit, **changes: object) -> SearchHit:
    from dataclasses import replace

    return replace(hit, **changes)  # type: ignore[arg-type]


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
        dense_rank=dense_rank,
        dense_similarity=None if distance is None else 1.0 - float(distance),
        lexical_rank=lexical_rank,
        lexical_score=None if lexical_score is None else float(lexical_score),
    )


@dataclass(frozen=True)
class LexemeStatistics:
    """How common the most common lexemes of the chunk table are, from PostgreSQL's own statistics (ANALYZE
    keeps the most common elements of the full-text column with the share of rows holding each)."""

    rows: float
    share: dict[str, float]
    floor: float  # the smallest tracked share: a lexeme that is not tracked is at most this common

    def estimated_rows(self, lexeme: str) -> float:
        return self.rows * self.share.get(lexeme, self.floor)


class _StatisticsCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: LexemeStatistics | None = None
        self.loaded_at = -float("inf")


_statistics_cache = _StatisticsCache()
STATISTICS_TTL_SECONDS = 300.0


def _lexeme_statistics(cursor: Any) -> LexemeStatistics | None:
    """The cached statistics (read again every few minutes); None before the table was first analyzed."""
    if time.monotonic() - _statistics_cache.loaded_at < STATISTICS_TTL_SECONDS:
        return _statistics_cache.value
    cursor.execute(
        "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples "
        "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname "
        "AND s.attname = 'search_vector' WHERE c.oid = 'knowledge_chunk'::regclass"
    )
    row = cursor.fetchone()
    loaded = None
    if row is not None and row[0] and row[1] and row[2] and row[2] > 0:
        elements, shares, rows = row
        tracked = dict(zip(elements, shares[: len(elements)], strict=True))
        loaded = LexemeStatistics(rows=float(rows), share=tracked, floor=min(tracked.values()))
    with _statistics_cache.lock:
        _statistics_cache.value = loaded
        _statistics_cache.loaded_at = time.monotonic()
    return loaded


def forget_lexeme_statistics() -> None:
    """Drop the cached statistics (after ANALYZE, and in tests)."""
    with _statistics_cache.lock:
        _statistics_cache.value = None
        _statistics_cache.loaded_at = -float("inf")


_LEXEME = re.compile(r"'(?:[^']|'')*'")


def _lexical_candidates(parsed: str, statistics: LexemeStatistics | None, budget: int) -> str | None:
    """The tsquery that picks which chunks the lexical side ranks, or None to rank every match.

    A natural question ORs all of its words, and ranking every chunk that holds any of them ("how do I delete
    many rows") grows with the collection. Most of those chunks hold one common word and rank low anyway. So
    the candidates are the chunks that hold one of the question's rarer lexemes: rarest first, as many as fit in
    `budget` estimated rows (at least the rarest one). They are still ranked against the whole question, so a
    chunk with all the words ranks first, as before. Queries with phrases or exclusions are left whole."""
    if statistics is None:
        return None
    lexemes = list(dict.fromkeys(_LEXEME.findall(parsed)))
    if len(lexemes) < 2 or _LEXEME.sub("", parsed).replace("&", "").replace("|", "").strip():
        return None
    ordered = sorted(lexemes, key=lambda lexeme: statistics.estimated_rows(lexeme[1:-1].replace("''", "'")))
    kept: list[str] = []
    total = 0.0
    for lexeme in ordered:
        rows = statistics.estimated_rows(lexeme[1:-1].replace("''", "'"))
        if kept and total + rows > budget:
            break
        kept.append(lexeme)
        total += rows
    if len(kept) == len(lexemes):
        return None
    return " | ".join(kept)


def _lexical_query_sql() -> str:
    """The tsquery: websearch syntax (quotes, -exclusions, OR), with AND turned into OR for natural questions,
    so that a chunk matching most of the words still ranks; cover density ranks those with all of them first."""
    operator = settings.KNOWLEDGE_LEXICAL_OPERATOR
    parsed = "websearch_to_tsquery(%(ts_config)s::regconfig, %(text)s)"
    if operator == "and":
        return parsed
    return f"replace({parsed}::text, ' & ', ' | ')::tsquery"


def _build_sql(
    *,
    mode: Mode,
    fusion: Fusion,
    groups: dict[str, list[int]],
    vectors: dict[str, list[float]],
    query: str,
    pool: int,
    limit: int,
    dense_weight: float,
    lexical_weight: float,
) -> tuple[str, dict[str, Any]]:
    # The SQL is assembled from fixed fragments only; every value travels as a bound parameter.
    params: dict[str, Any] = {
        "pool": pool,
        "limit": limit,
        "text": query,
        "ts_config": settings.KNOWLEDGE_TEXT_SEARCH_CONFIG,
        "rrf_k": settings.KNOWLEDGE_RRF_K,
        "w_dense": dense_weight if mode == "hybrid" else (1.0 if mode == "dense" else 0.0),
        "w_lexical": lexical_weight if mode == "hybrid" else (1.0 if mode == "lexical" else 0.0),
        "ts_norm": settings.KNOWLEDGE_TS_RANK_NORMALIZATION,
    }
    scope_parts = []
    dense_parts = []
    for index, (model_name, collection_ids) in enumerate(sorted(groups.items())):
        params[f"model_{index}"] = model_name
        params[f"collections_{index}"] = collection_ids
        scope = f"(c.collection_id = ANY(%(collections_{index})s) AND c.embedding_model = %(model_{index})s)"
        scope_parts.append(scope)
        if model_name in vectors:
            params[f"vector_{index}"] = _vector_literal(vectors[model_name])
            dense_parts.append(
                f"(SELECT c.id, c.embedding <=> %(vector_{index})s::vector AS distance FROM knowledge_chunk c "  # noqa: S608
                f"WHERE {scope} AND c.embedding IS NOT NULL "
                f"ORDER BY c.embedding <=> %(vector_{index})s::vector LIMIT %(pool)s)"
            )
    ctes = []
    if mode in ("dense", "hybrid"):
        ctes.append(f"dense_raw AS MATERIALIZED ({' UNION ALL '.join(dense_parts)})")
        ctes.append(
            "dense AS (SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM dense_raw "
            "ORDER BY distance LIMIT %(pool)s)"
        )
    else:
        ctes.append(
            "dense AS (SELECT NULL::bigint AS id, NULL::float8 AS distance, NULL::bigint AS rank WHERE false)"
        )
    if mode in ("lexical", "hybrid"):
        ctes.append(f"q AS (SELECT {_lexical_query_sql()} AS query)")
        ctes.append(
            "lexical_raw AS MATERIALIZED (SELECT c.id, ts_rank_cd(c.search_vector, q.query, %(ts_norm)s) AS score "  # noqa: S608
            f"FROM knowledge_chunk c, q WHERE ({' OR '.join(scope_parts)}) AND c.search_vector @@ q.query "
            "ORDER BY score DESC, c.id LIMIT %(pool)s)"
        )
        ctes.append(
            "lexical AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank FROM lexical_raw)"
        )
    else:
        ctes.append(
            "lexical AS (SELECT NULL::bigint AS id, NULL::float4 AS score, NULL::bigint AS rank WHERE false)"
        )

    if fusion == "rrf":
        fused = "COALESCE(%(w_dense)s / (%(rrf_k)s + d.rank), 0) + COALESCE(%(w_lexical)s / (%(rrf_k)s + l.rank), 0)"
    else:
        ctes.append(
            "bounds AS (SELECT (SELECT min(distance) FROM dense) AS d_min, (SELECT max(distance) FROM dense) AS d_max,"
            " (SELECT max(score) FROM lexical) AS l_max, (SELECT min(score) FROM lexical) AS l_min)"
        )
        fused = (
            "COALESCE(%(w_dense)s * (b.d_max - d.distance) / NULLIF(b.d_max - b.d_min, 0), %(w_dense)s * "
            "CASE WHEN d.id IS NOT NULL THEN 1 ELSE 0 END) + COALESCE(%(w_lexical)s * (l.score - b.l_min) / "
            "NULLIF(b.l_max - b.l_min, 0), %(w_lexical)s * CASE WHEN l.id IS NOT NULL THEN 1 ELSE 0 END)"
        )
    bounds_join = ", bounds b" if fusion == "weighted" else ""
    sql = (
        f"WITH {', '.join(ctes)}, "  # noqa: S608
        f"fused AS (SELECT COALESCE(d.id, l.id) AS id, {fused} AS score, d.rank AS dense_rank, d.distance, "
        f"l.rank AS lexical_rank, l.score AS lexical_score FROM dense d FULL OUTER JOIN lexical l ON d.id = l.id"
        f"{bounds_join} ORDER BY score DESC, COALESCE(d.rank, l.rank) LIMIT %(limit)s) "
        "SELECT f.id, f.score, f.dense_rank, f.distance, f.lexical_rank, f.lexical_score, c.document_id, "
        "c.collection_id, c.position, c.text, c.section, c.page_number, c.start_offset, c.end_offset, "
        "doc.title, doc.source_name "
        "FROM fused f JOIN knowledge_chunk c ON c.id = f.id JOIN knowledge_document doc ON doc.id = c.document_id "
        "ORDER BY f.score DESC, COALESCE(f.dense_rank, f.lexical_rank), f.id"
    )
    return sql, params


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in vector) + "]"
