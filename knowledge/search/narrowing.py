"""How rare the question's words are in the chunk table, from PostgreSQL's statistics: which chunks the lexical
half ranks (`lexical_candidates`, so that its cost stays bounded as the collection grows) and how much each of
the question's terms weighs in its score (`weighted_terms`).

The statistics are read once per STATISTICS_TTL_SECONDS per process, and the rare words counted through the GIN
index are kept with them (at most COUNTED_LEXEMES).
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import connection

from knowledge.models import Chunk


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


def lexeme_statistics(cursor: Any) -> LexemeStatistics | None:
    """The cached statistics (read again every few minutes); None before the table was first analyzed."""
    if time.monotonic() - _statistics_cache.loaded_at < STATISTICS_TTL_SECONDS:
        return _statistics_cache.value
    cursor.execute(
        "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples "
        "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname "
        "AND s.attname = 'search_vector' WHERE c.oid = %(table)s::regclass",
        {"table": connection.ops.quote_name(Chunk._meta.db_table)},
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


def lexical_candidates(parsed: str, statistics: LexemeStatistics | None, budget: int) -> str | None:
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


def weighted_terms(
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
    chunks = connection.ops.quote_name(Chunk._meta.db_table)
    if unknown:
        cursor.execute(
            f"SELECT t.lexeme, (SELECT count(*) FROM {chunks} c WHERE c.search_vector @@ t.lexeme::tsquery) "  # noqa: S608
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
        cursor.execute(f"SELECT count(*) FROM {chunks}")  # noqa: S608
        rows = float(cursor.fetchone()[0])
    rows = max(rows, max(known.values(), default=0.0), 1.0)

    def idf(lexeme: str) -> float:
        documents = known[lexeme]
        return math.log(1 + (rows - documents + 0.5) / (documents + 0.5))

    return [(term, max(idf(lexeme) for lexeme in _LEXEME.findall(term))) for term in terms]
