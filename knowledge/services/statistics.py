"""Planner statistics for the chunk table.

Whether a dense search walks the HNSW index or reads a collection's chunks and sorts them is the planner's choice,
made from the table's statistics. After a large import the statistics say the collection is tiny until the table
is analyzed again, and the planner sorts thousands of chunks where the index would answer in milliseconds.
PostgreSQL's autovacuum analyzes in time where it is on; these keep the choice right where it is off or late.
"""

from __future__ import annotations

from django.db import connection

from knowledge.models import Chunk
from knowledge.search import forget_lexeme_statistics

# Analyze when more than this share of the rows changed since the last analyze (autovacuum's default is 0.1).
CHANGED_SHARE = 0.1


def chunk_statistics_refresh(*, force: bool = False) -> bool:
    """ANALYZE the chunk table when many of its rows changed since it was last analyzed (or always, with
    `force`). Returns whether it ran."""
    table = Chunk._meta.db_table
    with connection.cursor() as cursor:
        if not force:
            cursor.execute(
                "SELECT n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables WHERE relname = %s", [table]
            )
            row = cursor.fetchone()
            if row is None:
                return False
            changed, live = row
            if changed <= max(50, CHANGED_SHARE * live):
                return False
        cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    forget_lexeme_statistics()  # this process reads the new word counts at its next search
    return True
