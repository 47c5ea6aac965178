"""The statements of a search, assembled from fixed fragments only: every value travels as a bound parameter,
and the tables are named by their models."""

from __future__ import annotations

from typing import Any

from django.db import connection, models

from knowledge.models import Chunk, Document
from knowledge.search import params as tuning
from knowledge.search.params import Fusion, Mode

# One round trip for the settings (local to the search's transaction) and the question's lexemes.
# random_page_cost: PostgreSQL's default (4) prices an HNSW scan above reading and sorting a whole 10k-chunk
# collection, which is 10x slower when the data is in memory or on SSD.
TRANSACTION_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %(ef)s, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.max_scan_tuples', %(tuples)s, true), "
    "set_config('random_page_cost', %(page_cost)s, true), "
    "CASE WHEN %(parse)s THEN websearch_to_tsquery(%(ts_config)s::regconfig, %(text)s)::text END"
)


def _table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _lexical_query_sql() -> str:
    """The tsquery: websearch syntax (quotes, -exclusions, OR), with AND turned into OR for natural questions,
    so that a chunk matching most of the words still ranks; cover density ranks those with all of them first."""
    operator = tuning.LEXICAL_OPERATOR
    parsed = "websearch_to_tsquery(%(ts_config)s::regconfig, %(text)s)"
    if operator == "and":
        return parsed
    return f"replace({parsed}::text, ' & ', ' | ')::tsquery"


def model_scopes(groups: dict[str, list[int]]) -> tuple[list[str], dict[str, Any]]:
    """One SQL condition per embedding model: its collections, and only chunks embedded with it."""
    bound: dict[str, Any] = {}
    conditions = []
    for index, (model_name, collection_ids) in enumerate(sorted(groups.items())):
        bound[f"model_{index}"] = model_name
        bound[f"collections_{index}"] = collection_ids
        conditions.append(
            f"(c.collection_id = ANY(%(collections_{index})s) AND c.embedding_model = %(model_{index})s)"
        )
    return conditions, bound


def lexical_sql(scope: list[str], *, narrowed: bool, weighted: bool = False) -> str:
    """The lexical half: the best `pool` chunks among the chunks the candidate tsquery picks (narrowed) or among
    every match, by the sum of each term's rank (ts_rank of the term alone: its occurrences, saturating, title
    and headings weighing more than the body) times its inverse document frequency (weighted), or by cover
    density against the whole question."""
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
        f"FROM {_table(Chunk)} c, q WHERE ({' OR '.join(scope)}) AND c.search_vector @@ {matches} "
        "ORDER BY score DESC, c.id LIMIT %(pool)s"
    )


def fusion_sql(*, mode: Mode, fusion: Fusion, groups: dict[str, list[int]], scope: list[str]) -> str:
    """The dense half (HNSW, per embedding model) fused with the lexical ranking passed in as arrays."""
    chunks = _table(Chunk)
    ctes = []
    if mode in ("dense", "hybrid"):
        dense_parts = [
            f"(SELECT c.id, c.embedding <=> %(vector_{index})s::vector AS distance FROM {chunks} c "  # noqa: S608
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
        f"nth_value(f.score, 2) OVER w AS second_score FROM fused f JOIN {chunks} c ON c.id = f.id "
        "WINDOW w AS (PARTITION BY c.document_id ORDER BY f.score DESC, f.id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)), "
        "ranked AS (SELECT p.*, p.score + CASE WHEN (SELECT count(*) FROM fused) >= %(pool)s THEN %(evidence)s "
        "* COALESCE(CASE WHEN p.nth = 1 THEN p.second_score ELSE p.first_score END, 0) ELSE 0 END AS final "
        "FROM pooled p "
        "ORDER BY final DESC, p.score DESC, COALESCE(p.dense_rank, p.lexical_rank), p.id LIMIT %(limit)s) "
        "SELECT r.id, r.final, r.dense_rank, r.distance, r.lexical_rank, r.lexical_score, c.document_id, "
        "c.collection_id, c.position, c.text, c.section, c.page_number, c.start_offset, c.end_offset, "
        "c.token_count, doc.title, doc.source_name "
        f"FROM ranked r JOIN {chunks} c ON c.id = r.id JOIN {_table(Document)} doc ON doc.id = c.document_id "
        "ORDER BY r.final DESC, r.score DESC, COALESCE(r.dense_rank, r.lexical_rank), r.id"
    )


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in vector) + "]"
