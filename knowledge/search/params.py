"""What a search may be asked: its modes and fusions, the tuning chosen by measurement, the per-call knobs
(`SearchParams`), and the error for a request that is not valid.

The constants are read from this module when a search runs (`params.RRF_K`, never a copy taken at import), so
`manage.py evaluate_retrieval` reports and a test patches them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.errors import InvalidInput

if TYPE_CHECKING:
    from knowledge.search.rerank import Reranker

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
# A query of this many words or fewer is a term ("CASCADE with DROP"), of this many or more a sentence
# (`query_shape`); quality: "The query's shape sets the fusion".
TERM_WORDS = 3
SENTENCE_WORDS = 6


class InvalidSearch(InvalidInput):
    """The search request is not valid."""


@dataclass(frozen=True)
class SearchParams:
    """The tuning of one search call; None (False for `rerank`) is the measured default above.

    `rerank` asks for the reranking stage, with `reranker` or else the configured one (none: no stage)."""

    fusion: Fusion | None = None
    candidates: int | None = None  # chunks each retriever contributes, SEARCH_CANDIDATES by default
    rerank: bool = False
    reranker: Reranker | None = None
    dense_weight: float | None = None
    lexical_weight: float | None = None  # by the query's shape by default (HYBRID_*LEXICAL_WEIGHT)
    ef_search: int | None = None
