"""Hybrid retrieval in PostgreSQL: pgvector HNSW (cosine) and full-text search, fused in SQL.

The lexical half runs first; the dense half (HNSW) then runs with the lexical ranking passed in, and the two
are fused by reciprocal rank fusion (default) or by a weighted sum of min-max normalized scores, each cut to
`candidates` rows. The lexical half ranks only the chunks that hold
the question's rarer words (see `_lexical_candidates`), so its cost stays bounded as the collection grows.
Collection (permission) filters and the active-embedding-model filter are part of both halves; pgvector's
iterative index scan keeps a restrictive filter from starving the dense list. An optional reranker re-scores
the fused candidates.
"""

from __future__ import annotations

import math
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

from core.errors import InvalidInput
from knowledge.embeddings import get_embedder
from knowledge.models import Collection

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["rrf", "weighted"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")

# Retrieval tuning, chosen by measurement: constants, not settings, for a new value needs a new measurement
# (`manage.py evaluate_retrieval`, whose options override the fusion, weights and candidates for a run).
# Each names the part of benchmarks/README.md that chose it: "quality" is its "Retrieval quality" section,
# "speed" its "Search speed and HNSW recall".
FUSION: Fusion = "rrf"  # quality: the defaults it measured
RRF_K = 20  # quality: k 40 and 60 within ±0.005
HYBRID_DENSE_WEIGHT = 1.0  # quality: the defaults it measured
HYBRID_LEXICAL_WEIGHT = 0.4  # a sentence's; quality: 0.6 within ±0.005
HYBRID_TERM_LEXICAL_WEIGHT = 1.0  # a term's; quality: "The query's shape sets the fusion"
DOCUMENT_EVIDENCE = 1.0  # quality: "A document counts by more than its best chunk, for sentences"
LEXICAL_OPERATOR: Literal["or", "and"] = "or"  # quality: OR between words, for natural questions
TS_RANK_NORMALIZATION = 0  # ts_rank's normalization flags (0: none); quality: the defaults it measured
LEXICAL_CANDIDATE_BUDGET = 1000  # estimated rows; quality: the budget's table (300, 1,000, 3,000, 0)
SEARCH_CANDIDATES = 50  # chunks each retriever contributes; quality and speed
RERANK_CANDIDATES = 50  # chunks a reranker re-scores, as many as fused (none is measured here)
HNSW_EF_SEARCH = 200  # speed: recall@10 0.999 at a million vectors, 0.944 at 100
HNSW_MAX_SCAN_TUPLES = 20_000  # pgvector's default bound of the iterative scan under restrictive filters
RANDOM_PAGE_COST = 1.1  # speed: at 4 the planner sorted a collection (42 ms) instead of the HNSW scan (3 ms)


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
    # The tsquery that chose the chunks the lexical side ranked, when it was narrowed (see _lexical_candidates).
    lexical_candidates: str | None = None

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
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise InvalidSearch(
                "A reranker needs sentence-transformers, which is optional: "
                "install it with `scripts/install_python_deps.sh --torch`."
            ) from exc

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
    fusion = fusion or FUSION
    if fusion not in ("rrf", "weighted"):
        raise InvalidSearch(f"Unknown fusion {fusion!r}; use rrf or weighted.")
    result = SearchResult(query=query, mode=mode, hits=[])
    sentence = query_shape(query)
    groups: dict[str, list[int]] = defaultdict(list)
    for collection in collections:
        groups[collection.embedding_model].append(collection.pk)
    if not query or not groups:
        return result
    if rerank and reranker is None:
        reranker = configured_reranker()
    pool = max(limit, candidates or SEARCH_CANDIDATES)
    if reranker is not None and rerank:
        pool = max(pool, RERANK_CANDIDATES)

    vectors: dict[str, list[float]] = {}
    if mode != "lexical":
        embed_started = time.perf_counter()
        vectors = {name: get_embedder(name).embed_query(query).tolist() for name in groups}
        result.timings["embed"] = time.perf_counter() - embed_started

    search_started = time.perf_counter()
    scope, params = _scope(groups)
    params.update(
        pool=pool,
        limit=pool if rerank and reranker is not None else limit,
        text=query,
        ts_config=settings.KNOWLEDGE_TEXT_SEARCH_CONFIG,
        rrf_k=RRF_K,
        ts_norm=TS_RANK_NORMALIZATION,
        w_dense=(dense_weight if dense_weight is not None else HYBRID_DENSE_WEIGHT)
        if mode == "hybrid"
        else float(mode == "dense"),
        w_lexical=(lexical_weight if lexical_weight is not None else _lexical_weight(sentence))
        if mode == "hybrid"
        else float(mode == "lexical"),
        evidence=sentence * DOCUMENT_EVIDENCE,
    )
    narrow = mode != "dense" and LEXICAL_OPERATOR != "and"
    narrow = narrow and LEXICAL_CANDIDATE_BUDGET > 0
    weigh = mode != "dense"
    with transaction.atomic(), connection.cursor() as cursor:
        # One round trip for the settings (local to this transaction) and the question's lexemes.
        # random_page_cost: PostgreSQL's default (4) prices an HNSW scan above reading and sorting a whole
        # 10k-chunk collection, which is 10x slower when the data is in memory or on SSD.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %(ef)s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %(tuples)s, true), "
            "set_config('random_page_cost', %(page_cost)s, true), "
            "CASE WHEN %(parse)s THEN websearch_to_tsquery(%(ts_config)s::regconfig, %(text)s)::text END",
            {
                "ef": str(ef_search or HNSW_EF_SEARCH),
                "tuples": str(HNSW_MAX_SCAN_TUPLES),
                "page_cost": str(RANDOM_PAGE_COST),
                "parse": narrow or weigh,
                "ts_config": settings.KNOWLEDGE_TEXT_SEARCH_CONFIG,
                "text": query,
            },
        )
        parsed_query = cursor.fetchone()[-1]
        lexical_ids: list[int] = []
        lexical_scores: list[float] = []
        if mode != "dense":
            statistics = _lexeme_statistics(cursor) if parsed_query else None
            if narrow and parsed_query:
                result.lexical_candidates = _lexical_candidates(
                    parsed_query, statistics, LEXICAL_CANDIDATE_BUDGET
                )
            lexical_started = time.perf_counter()
            terms = _weighted_terms(cursor, parsed_query, statistics) if weigh and parsed_query else None
            cursor.execute(
                _lexical_sql(
                    scope, narrowed=result.lexical_candidates is not None, weighted=terms is not None
                ),
                {
                    **params,
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
                params[f"vector_{index}"] = _vector_literal(vectors[model_name])
        params.update(lexical_ids=lexical_ids, lexical_scores=lexical_scores)
        cursor.execute(_fusion_sql(mode=mode, fusion=fusion, groups=groups, scope=scope), params)
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


# A query of this many words or fewer is a term ("CASCADE with DROP"), of this many or more a sentence.
TERM_WORDS = 3
SENTENCE_WORDS = 6
_WORD = re.compile(r"\w+")


def query_shape(query: str) -> float:
    """How much `query` reads as a sentence rather than a term: 0 up to TERM_WORDS words, 1 from SENTENCE_WORDS.

    Measured on the PostgreSQL manual (its index terms and the natural questions): a term is best found by its
    words and by the one chunk that holds them (a definition), a question by its meaning, and by pages that
    answer it in more than one place."""
    words = len(_WORD.findall(query))
    return min(1.0, max(0.0, (words - TERM_WORDS) / (SENTENCE_WORDS - TERM_WORDS)))


def _lexical_weight(sentence: float) -> float:
    """The lexical list's weight in the fusion: HYBRID_LEXICAL_WEIGHT for a sentence, up to
    HYBRID_TERM_LEXICAL_WEIGHT for a term."""
    term_weight = HYBRID_TERM_LEXICAL_WEIGHT
    return float(term_weight + (HYBRID_LEXICAL_WEIGHT - term_weight) * sentence)


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
        # Rows holding each rare lexeme, counted once per statistics period (bounded: oldest dropped first).
        self.counts: dict[str, float] = {}


COUNTED_LEXEMES = 50_000


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
        _statistics_cache.counts = {}
    return loaded


def forget_lexeme_statistics() -> None:
    """Drop the cached statistics (after ANALYZE, and in tests)."""
    with _statistics_cache.lock:
        _statistics_cache.value = None
        _statistics_cache.loaded_at = -float("inf")
        _statistics_cache.counts = {}


_LEXEME = re.compile(r"'(?:[^']|'')*'")


def _unquoted(lexeme: str) -> str:
    """A lexeme as the statistics spell it: without the quotes of a tsquery's text form."""
    return lexeme[1:-1].replace("''", "'")


_TOP_LEVEL_OPERATOR = re.compile(r"\s+[&|]\s+")


def _lexical_candidates(parsed: str, statistics: LexemeStatistics | None, budget: int) -> str | None:
    """The tsquery that picks which chunks the lexical side ranks, or None to rank every match.

    A natural question ORs all of its words, and ranking every chunk that holds any of them ("how do I delete
    many rows") grows with the collection. Most of those chunks hold one common word and rank low anyway. So
    the candidates are the chunks that hold one of the question's rarer terms: rarest first, as many as fit in
    `budget` estimated rows; when even the rarest is over the budget, the chunks that hold the rarest few
    together. A phrase (a quoted phrase, or a hyphenated word such as
    read-only) counts as its rarest word, since it can only match where that word is. The candidates are still
    ranked against the whole question, so a chunk with all the words ranks first, as before. Queries with
    exclusions or parentheses are left whole."""
    if statistics is None or any(mark in _LEXEME.sub("", parsed) for mark in "!()"):
        return None

    def estimate(lexeme: str) -> float:
        return statistics.estimated_rows(_unquoted(lexeme))

    rarest_of_terms: dict[str, float] = {}
    phrases = False
    for term in _TOP_LEVEL_OPERATOR.split(parsed.strip()):
        lexemes = _LEXEME.findall(term)
        if not lexemes:
            return None
        phrases = phrases or len(lexemes) > 1
        rarest = min(lexemes, key=estimate)
        rarest_of_terms[rarest] = estimate(rarest)
    if len(rarest_of_terms) < 2 or statistics.rows <= budget:
        return None
    ordered = sorted(rarest_of_terms.items(), key=lambda item: item[1])
    if ordered[0][1] > budget:
        # Every word is common ("why does my query not use an index"): the chunks that hold the rarest words
        # together, as few of them as bring the estimate (assuming independent words) under the budget.
        together: list[str] = []
        rows = statistics.rows
        for lexeme, estimated in ordered:
            together.append(lexeme)
            rows *= estimated / statistics.rows
            if rows <= budget:
                break
        return " & ".join(together)
    kept: list[str] = []
    total = 0.0
    for lexeme, estimated in ordered:
        if total + estimated > budget:
            break
        kept.append(lexeme)
        total += estimated
    if len(kept) == len(rarest_of_terms) and not phrases:
        return None
    return " | ".join(kept)


def _lexical_query_sql() -> str:
    """The tsquery: websearch syntax (quotes, -exclusions, OR), with AND turned into OR for natural questions,
    so that a chunk matching most of the words still ranks; cover density ranks those with all of them first."""
    operator = LEXICAL_OPERATOR
    parsed = "websearch_to_tsquery(%(ts_config)s::regconfig, %(text)s)"
    if operator == "and":
        return parsed
    return f"replace({parsed}::text, ' & ', ' | ')::tsquery"


def _scope(groups: dict[str, list[int]]) -> tuple[list[str], dict[str, Any]]:
    """One SQL condition per embedding model: its collections, and only chunks embedded with it."""
    params: dict[str, Any] = {}
    scope = []
    for index, (model_name, collection_ids) in enumerate(sorted(groups.items())):
        params[f"model_{index}"] = model_name
        params[f"collections_{index}"] = collection_ids
        scope.append(
            f"(c.collection_id = ANY(%(collections_{index})s) AND c.embedding_model = %(model_{index})s)"
        )
    return scope, params


def _weighted_terms(
    cursor: Any, parsed: str, statistics: LexemeStatistics | None
) -> list[tuple[str, float]] | None:
    """The question's terms (its top-level OR'd words and phrases as tsqueries), each with its inverse document
    frequency, ln(1 + (N - n + 0.5) / (n + 0.5)), as BM25 weighs them: n from PostgreSQL's statistics for common
    lexemes, counted through the GIN index for the rest (which are rare, so the count is cheap). A phrase is as
    rare as its rarest word. None for a query with exclusions or groups: it is ranked as a whole."""
    if any(mark in _LEXEME.sub("", parsed) for mark in "!()"):
        return None
    terms = [term.strip() for term in _TOP_LEVEL_OPERATOR.split(parsed.strip()) if _LEXEME.search(term)]
    if not terms:
        return None
    lexemes = sorted({lexeme for term in terms for lexeme in _LEXEME.findall(term)})
    rows = statistics.rows if statistics is not None else 0.0
    known = {
        lexeme: statistics.share[_unquoted(lexeme)] * rows
        for lexeme in lexemes
        if statistics is not None and _unquoted(lexeme) in statistics.share
    }
    counts = _statistics_cache.counts if statistics is not None else {}
    known.update({lexeme: counts[lexeme] for lexeme in lexemes if lexeme not in known and lexeme in counts})
    unknown = [lexeme for lexeme in lexemes if lexeme not in known]
    if unknown:
        cursor.execute(
            "SELECT t.lexeme, (SELECT count(*) FROM knowledge_chunk c WHERE c.search_vector @@ t.lexeme::tsquery) "
            "FROM unnest(%(lexemes)s::text[]) AS t(lexeme)",
            {"lexemes": unknown},
        )
        counted = {lexeme: float(count) for lexeme, count in cursor.fetchall()}
        known.update(counted)
        if statistics is not None:
            with _statistics_cache.lock:
                while len(counts) + len(counted) > COUNTED_LEXEMES and counts:
                    counts.pop(next(iter(counts)))
                counts.update(counted)
    if statistics is None:  # a table never analyzed yet, so a small one: counted
        cursor.execute("SELECT count(*) FROM knowledge_chunk")
        rows = float(cursor.fetchone()[0])
    rows = max(rows, max(known.values(), default=0.0), 1.0)

    def idf(lexeme: str) -> float:
        documents = known[lexeme]
        return math.log(1 + (rows - documents + 0.5) / (documents + 0.5))

    return [(term, max(idf(lexeme) for lexeme in _LEXEME.findall(term))) for term in terms]


def _lexical_sql(scope: list[str], *, narrowed: bool, weighted: bool = False) -> str:
    """The lexical half: the best `pool` chunks among the chunks the candidate tsquery picks (narrowed) or among
    every match, by the sum of each term's rank (ts_rank of the term alone: its occurrences, saturating, title
    and headings weighing more than the body) times its inverse document frequency (weighted), or by cover
    density against the whole question."""
    # The SQL is assembled from fixed fragments only; every value travels as a bound parameter.
    # Narrowed, the candidate tsquery picks the rows through the GIN index and the whole question rechecks them
    # (a phrase counts as its rarest word when narrowing; the chunk must still hold the phrase).
    matches = "%(candidates)s::tsquery AND c.search_vector @@ q.query" if narrowed else "q.query"
    score = (
        "(SELECT sum(t.weight * ts_rank(c.search_vector, t.query, %(ts_norm)s)) FROM unnest("
        "%(term_queries)s::tsquery[], %(term_weights)s::float8[]) AS t(query, weight))"
        if weighted
        else "ts_rank_cd(c.search_vector, q.query, %(ts_norm)s)"
    )
    return (
        f"WITH q AS (SELECT {_lexical_query_sql()} AS query) "  # noqa: S608
        f"SELECT c.id, {score} AS score "
        f"FROM knowledge_chunk c, q WHERE ({' OR '.join(scope)}) AND c.search_vector @@ {matches} "
        "ORDER BY score DESC, c.id LIMIT %(pool)s"
    )


def _fusion_sql(*, mode: Mode, fusion: Fusion, groups: dict[str, list[int]], scope: list[str]) -> str:
    """The dense half (HNSW, per embedding model) fused with the lexical ranking passed in as arrays."""
    ctes = []
    if mode in ("dense", "hybrid"):
        dense_parts = [
            f"(SELECT c.id, c.embedding <=> %(vector_{index})s::vector AS distance FROM knowledge_chunk c "  # noqa: S608
            f"WHERE {scope[index]} AND c.embedding IS NOT NULL "
            f"ORDER BY c.embedding <=> %(vector_{index})s::vector LIMIT %(pool)s)"
            for index in range(len(groups))
        ]
        ctes.append(f"dense_raw AS MATERIALIZED ({' UNION ALL '.join(dense_parts)})")
        ctes.append(
            "dense AS (SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM dense_raw "
            "ORDER BY distance LIMIT %(pool)s)"
        )
    else:
        ctes.append(
            "dense AS (SELECT NULL::bigint AS id, NULL::float8 AS distance, NULL::bigint AS rank WHERE false)"
        )
    ctes.append(
        "lexical AS (SELECT l.id, l.score, l.rank FROM unnest(%(lexical_ids)s::bigint[], "
        "%(lexical_scores)s::float4[]) WITH ORDINALITY AS l(id, score, rank))"
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
    # A document's evidence: a chunk's score, plus (by the query's shape) the score of the best other chunk of its
    # document among the candidates, so that a page that answers in two places outranks one lucky chunk. Only
    # when the candidates were chosen: where the collection has no more chunks than the pool, every chunk is a
    # candidate, and a page of many sections would gain from its irrelevant ones.
    return (
        f"WITH {', '.join(ctes)}, "  # noqa: S608
        f"fused AS (SELECT COALESCE(d.id, l.id) AS id, {fused} AS score, d.rank AS dense_rank, d.distance, "
        f"l.rank AS lexical_rank, l.score AS lexical_score FROM dense d FULL OUTER JOIN lexical l ON d.id = l.id"
        f"{bounds_join}), "
        "pooled AS (SELECT f.*, row_number() OVER w AS nth, first_value(f.score) OVER w AS first_score, "
        "nth_value(f.score, 2) OVER w AS second_score FROM fused f JOIN knowledge_chunk c ON c.id = f.id "
        "WINDOW w AS (PARTITION BY c.document_id ORDER BY f.score DESC, f.id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)), "
        "ranked AS (SELECT p.*, p.score + CASE WHEN (SELECT count(*) FROM fused) >= %(pool)s THEN %(evidence)s "
        "* COALESCE(CASE WHEN p.nth = 1 THEN p.second_score ELSE p.first_score END, 0) ELSE 0 END AS final "
        "FROM pooled p "
        "ORDER BY final DESC, p.score DESC, COALESCE(p.dense_rank, p.lexical_rank), p.id LIMIT %(limit)s) "
        "SELECT r.id, r.final, r.dense_rank, r.distance, r.lexical_rank, r.lexical_score, c.document_id, "
        "c.collection_id, c.position, c.text, c.section, c.page_number, c.start_offset, c.end_offset, "
        "c.token_count, doc.title, doc.source_name "
        "FROM ranked r JOIN knowledge_chunk c ON c.id = r.id JOIN knowledge_document doc ON doc.id = c.document_id "
        "ORDER BY r.final DESC, r.score DESC, COALESCE(r.dense_rank, r.lexical_rank), r.id"
    )


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in vector) + "]"
