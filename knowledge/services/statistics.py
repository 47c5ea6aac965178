"""Planner statistics for the chunk table.

Whether a dense search walks the HNSW index or reads a collection's chunks and sorts them is the planner's choice,
made from the table's statistics. After a large import the statistics say the collection is tiny until the table
is analyzed again, and the planner sorts thousands of chunks where the index would answer in milliseconds.
PostgreSQL's autovacuum analyzes in time where it is on; these keep the choice right where it is off or late.

Dead rows are worse: a replaced or deleted chunk stays in the HNSW graph until the table is vacuumed, and the
search's candidates are taken from the graph before dead rows are dropped, so a collection re-indexed (or a large
document deleted) leaves holes in every dense list. Measured on the raw-HTML PostgreSQL manual with 33k dead
chunks of another collection in the table: dense nDCG@10 0.5919 and Recall@100 0.8067, against 0.6862 and 0.9733
once vacuumed (benchmarks/README.md, "Retrieval quality"). So the table is vacuumed too when many rows are dead.
"""

from __future__ import annotations

from django.db import connection

from knowledge.models import Chunk
from knowledge.search import forget_lexeme_statistics

# Analyze when more than this share of the rows changed since the last analyze (autovacuum's default is 0.1).
CHANGED_SHARE = 0.1
# Vacuum when more than this share of the rows are dead (autovacuum's default is 0.2; dead rows cost recall).
DEAD_SHARE = 0.1


def chunk_statistics_refresh(*, force: bool = False) -> bool:
    """ANALYZE the chunk table when many of its rows changed since it was last analyzed (or always, with
    `force`), and VACUUM it first when many of its rows are dead (not inside a transaction, where PostgreSQL
    cannot). Returns whether it ran."""
    table = Chunk._meta.db_table
    quoted = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_mod_since_analyze, n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = %s",
            [table],
        )
        row = cursor.fetchone()
        changed, live, dead = row if row is not None else (0, 0, 0)
        vacuum = dead > max(50, DEAD_SHARE * live) and not connection.in_atomic_block
        if not (force or vacuum or changed > max(50, CHANGED_SHARE * live)):
            return False
        cursor.execute(f"VACUUM (ANALYZE) {quoted}" if vacuum else f"ANALYZE {quoted}")
    forget_lexeme_statistics()  # this process reads the new word counts at its next search
    return True
