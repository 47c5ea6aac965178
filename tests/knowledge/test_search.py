import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction

from knowledge import search, selectors, services
from knowledge.embeddings import HASHING, MINILM, get_embedder
from knowledge.models import Chunk, Document
from knowledge.search import narrowing, params
from tests.factories import CollectionFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = {
    "vacuum.md": "# Vacuum\n\nVACUUM reclaims storage occupied by dead tuples. Autovacuum runs it automatically.",
    "backup.md": "# Backup\n\npg_dump writes a consistent snapshot of one database to a file for backups.",
    "index.md": "# Indexes\n\nA B-tree index speeds up equality and range queries on sortable data.",
    "json.md": "# JSON\n\nThe jsonb type stores JSON in a decomposed binary format that supports indexing.",
}


def fill(collection, pages, capture):
    with capture(execute=True):
        for name, text in pages.items():
            services.document_add(collection=collection, name=name, content=text.encode())


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_finds_the_page_about_the_question(mode, django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=MINILM)
    fill(collection, PAGES, django_capture_on_commit_callbacks)

    result = search.search(
        query="reclaim storage from dead tuples", collections=[collection], limit=3, mode=mode
    )

    assert result.hits[0].source_name == "vacuum.md"
    assert result.hits[0].title == "Vacuum"


def test_hybrid_reports_each_retrievers_rank_and_score(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=MINILM)
    fill(collection, PAGES, django_capture_on_commit_callbacks)

    result = search.search(query="pg_dump backups", collections=[collection], limit=4, mode="hybrid")

    top = result.hits[0]
    assert top.source_name == "backup.md"
    assert top.dense_rank == 1 and top.lexical_rank == 1
    assert 0 < top.dense_similarity <= 1 and top.lexical_score > 0
    assert set(result.timings) >= {"embed", "search", "total"}
    assert top.token_count == Chunk.objects.get(pk=top.chunk_id).token_count > 0


def test_weighted_fusion_ranks_like_rrf_on_an_easy_question(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=MINILM)
    fill(collection, PAGES, django_capture_on_commit_callbacks)

    result = search.search(
        query="binary JSON storage",
        collections=[collection],
        limit=2,
        params=search.SearchParams(fusion="weighted"),
    )

    assert result.hits[0].source_name == "json.md"
    assert 0 < result.hits[0].score <= 2.0


def test_search_never_leaves_the_given_collections(django_capture_on_commit_callbacks):
    mine = CollectionFactory(embedding_model=HASHING)
    other = CollectionFactory(embedding_model=HASHING)
    fill(mine, {"a.md": "# A\n\nvacuum and autovacuum"}, django_capture_on_commit_callbacks)
    fill(other, {"b.md": "# B\n\nvacuum vacuum vacuum"}, django_capture_on_commit_callbacks)

    result = search.search(query="vacuum", collections=[mine], limit=10)

    assert {hit.collection_id for hit in result.hits} == {mine.pk}


def test_only_chunks_of_the_collections_active_model_are_searched(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=HASHING)
    fill(collection, PAGES, django_capture_on_commit_callbacks)
    Chunk.objects.filter(document__source_name="vacuum.md").update(embedding_model="some-other-model")

    result = search.search(query="VACUUM dead tuples", collections=[collection], limit=10, mode="hybrid")

    assert "vacuum.md" not in {hit.source_name for hit in result.hits}


def synthetic_chunks(collection, count, rng):
    document = Document.objects.create(
        collection=collection,
        title=f"synthetic {collection.slug}",
        source_name=f"{collection.slug}.txt",
        size_bytes=1,
        content_hash=f"{collection.pk:064d}",
        status=Document.Status.READY,
    )
    vectors = rng.standard_normal((count, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    Chunk.objects.bulk_create(
        [
            Chunk(
                document=document,
                collection=collection,
                position=i,
                text=f"chunk {i}",
                start_offset=0,
                end_offset=0,
                token_count=2,
                embedding=vector,
                embedding_model=collection.embedding_model,
            )
            for i, vector in enumerate(vectors)
        ],
        batch_size=2000,
    )


def test_a_restrictive_filter_still_returns_k_dense_results():
    """A collection with 1% of the chunks, searched through the HNSW index with a small ef_search: a plain index
    scan finds almost none of its chunks among the nearest candidates; the iterative scan keeps going until k."""
    rng = np.random.default_rng(7)
    big = CollectionFactory(embedding_model=HASHING)
    small = CollectionFactory(embedding_model=HASHING)
    synthetic_chunks(big, 4950, rng)
    synthetic_chunks(small, 50, rng)
    with connection.cursor() as cursor:
        # Leave the planner only the HNSW index, as it would choose on a large table (rolled back after the test).
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk' AND indexdef LIKE '%%(collection_id%%'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
    query_vector = "[" + ",".join(f"{v:.6f}" for v in get_embedder(HASHING).embed_query("anything")) + "]"

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = 10")
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        cursor.execute(
            "SELECT count(*) FROM (SELECT id FROM knowledge_chunk WHERE collection_id = %s "
            "ORDER BY embedding <=> %s::vector LIMIT 10) s",
            [small.pk, query_vector],
        )
        without_iteration = cursor.fetchone()[0]
        cursor.execute(
            "EXPLAIN SELECT id FROM knowledge_chunk WHERE collection_id = %s ORDER BY embedding <=> %s::vector LIMIT 10",
            [small.pk, query_vector],
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    result = search.search(
        query="anything",
        collections=[small],
        limit=10,
        mode="dense",
        params=search.SearchParams(ef_search=10),
    )

    assert "chunk_embedding_hnsw" in plan
    assert without_iteration < 10
    assert len(result.hits) == 10
    assert {hit.collection_id for hit in result.hits} == {small.pk}


def test_users_search_only_what_they_may_read(django_capture_on_commit_callbacks):
    public = CollectionFactory(visibility="public", embedding_model=HASHING)
    secret = CollectionFactory(visibility="restricted", embedding_model=HASHING)
    team = GroupFactory()
    shared = CollectionFactory(visibility="restricted", embedding_model=HASHING)
    shared.allowed_groups.add(team)
    member = UserFactory()
    member.groups.add(team)
    outsider = UserFactory()
    for collection in (public, secret, shared):
        fill(
            collection,
            {f"{collection.slug}.md": "# Doc\n\nshared words about vacuum"},
            django_capture_on_commit_callbacks,
        )

    member_hits = selectors.chunk_search(user=member, query="vacuum", limit=10)
    outsider_hits = selectors.chunk_search(user=outsider, query="vacuum", limit=10)

    assert {hit.collection_id for hit in member_hits.hits} == {public.pk, shared.pk}
    assert {hit.collection_id for hit in outsider_hits.hits} == {public.pk}
    with pytest.raises(selectors.CollectionNotReadable):
        selectors.chunk_search(user=outsider, query="vacuum", collection_ids=[secret.pk])
    assert selectors.collections_for_search(user=AnonymousUser()) == []


def test_bad_mode_and_limit_are_clear_errors():
    with pytest.raises(search.InvalidSearch, match="mode"):
        search.search(query="x", collections=[], mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(search.InvalidSearch, match="limit"):
        search.search(query="x", collections=[], limit=0)


class ReverseReranker:
    name = "reverse"

    def score(self, query, texts):
        return [float(-index) if "B-tree" not in text else 100.0 for index, text in enumerate(texts)]


def test_a_reranker_reorders_the_fused_candidates(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=HASHING)
    fill(collection, PAGES, django_capture_on_commit_callbacks)

    result = search.search(
        query="vacuum",
        collections=[collection],
        limit=2,
        params=search.SearchParams(rerank=True, reranker=ReverseReranker()),
    )

    assert result.reranked
    assert result.hits[0].source_name == "index.md"
    assert result.hits[0].rerank_score == 100.0
    assert "rerank" in result.timings


@pytest.mark.django_db(transaction=True)
def test_chunk_statistics_are_refreshed_after_large_changes_only():
    """The planner picks HNSW or a sort by what the statistics say a collection holds; they are refreshed after
    a large import even where autovacuum is off."""
    from django.db import connection

    from knowledge import services as knowledge_services

    def flush_stats():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")

    assert knowledge_services.chunk_statistics_refresh(force=True) is True
    flush_stats()
    assert knowledge_services.chunk_statistics_refresh() is False  # nothing changed since

    collection = CollectionFactory(embedding_model="hashing-384")
    knowledge_services.document_import(
        collection=collection,
        name="many.md",
        content=(
            "# Many\n\n" + "\n\n".join(f"Paragraph {n} about vacuum." * 30 for n in range(120))
        ).encode(),
        index_now=True,
    )
    assert Chunk.objects.filter(collection=collection).count() > 50
    flush_stats()
    assert knowledge_services.chunk_statistics_refresh() is True
    flush_stats()
    assert knowledge_services.chunk_statistics_refresh() is False


@pytest.mark.django_db(transaction=True)
def test_the_chunk_table_is_vacuumed_when_many_of_its_rows_are_dead():
    """Dead chunks stay in the HNSW graph, where they crowd the dense candidates, until the table is vacuumed."""
    from django.db import connection

    from knowledge import services as knowledge_services

    def table_stats():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute(
                "SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname = 'knowledge_chunk'"
            )
            return cursor.fetchone()

    collection = CollectionFactory(embedding_model="hashing-384")
    added = knowledge_services.document_import(
        collection=collection,
        name="many.md",
        content=(
            "# Many\n\n" + "\n\n".join(f"Paragraph {n} about vacuum." * 30 for n in range(120))
        ).encode(),
        index_now=True,
    )
    knowledge_services.chunk_statistics_refresh(force=True)
    _, vacuums_before = table_stats()
    knowledge_services.document_delete(document=added.document)
    dead, _ = table_stats()
    assert dead > 50

    assert knowledge_services.chunk_statistics_refresh() is True
    dead, vacuums_after = table_stats()
    assert vacuums_after == vacuums_before + 1
    assert dead == 0


def stats(rows: float, **share: float) -> narrowing.LexemeStatistics:
    return narrowing.LexemeStatistics(rows=rows, share=share, floor=min(share.values()))


def test_lexical_candidates_keep_the_rarest_words_that_fit_the_budget():
    statistics = stats(100_000, row=0.30, delet=0.05, disk=0.02, reclaim=0.001)

    kept = narrowing.lexical_candidates("'reclaim' | 'disk' | 'delet' | 'row'", statistics, budget=2500)

    # reclaim (~100 rows) and disk (~2,000) fit in 2,500; delet (~5,000) and row (~30,000) do not.
    assert kept == "'reclaim' | 'disk'"


def test_when_every_word_is_common_the_candidates_hold_the_rarest_words_together():
    statistics = stats(100_000, tabl=0.4, use=0.3, index=0.1, queri=0.2)
    parsed = "'queri' & 'use' & 'index' & 'tabl'"

    # index alone: ~10,000 rows; with queri: ~2,000; with use as well: ~600.
    assert narrowing.lexical_candidates(parsed, statistics, budget=5_000) == "'index' & 'queri'"
    assert narrowing.lexical_candidates(parsed, statistics, budget=1_000) == "'index' & 'queri' & 'use'"
    assert narrowing.lexical_candidates(parsed, statistics, budget=1) == "'index' & 'queri' & 'use' & 'tabl'"


def test_an_untracked_word_counts_as_rare_as_the_rarest_tracked_one():
    statistics = stats(1_000, tabl=0.4, index=0.01)

    assert narrowing.lexical_candidates("'tabl' | 'brin'", statistics, budget=100) == "'brin'"


def test_lexical_candidates_leave_the_query_whole_when_every_word_fits():
    statistics = stats(100_000, row=0.30, reclaim=0.001)

    assert narrowing.lexical_candidates("'reclaim' | 'row'", statistics, budget=40_000) is None


def test_a_phrase_or_hyphenated_word_counts_as_its_rarest_word():
    statistics = stats(100_000, read=0.05, role=0.02, tabl=0.4, **{"read-on": 0.003})
    parsed = "'give' & 'role' & 'read-on' <-> 'read' & 'access' & 'tabl'"  # websearch_to_tsquery's output

    kept = narrowing.lexical_candidates(parsed, statistics, budget=2_000)

    # give and access are untracked (as rare as read-on, the rarest tracked: ~300 rows each).
    assert set(kept.split(" | ")) == {"'read-on'", "'give'", "'access'"}


@pytest.mark.parametrize(
    "parsed",
    [
        "'row'",  # one word
        "'disk' <-> 'space'",  # one phrase
        "'row' & !'delet'",  # an exclusion
        "( 'row' | 'tabl' ) & 'disk'",  # parentheses
    ],
)
def test_lexical_candidates_leave_single_terms_exclusions_and_groups_whole(parsed):
    statistics = stats(100_000, row=0.30, delet=0.05, disk=0.02, space=0.02)

    assert narrowing.lexical_candidates(parsed, statistics, budget=1) is None


def test_lexical_candidates_need_statistics():
    assert narrowing.lexical_candidates("'reclaim' | 'row'", None, budget=10) is None


def test_lexical_search_ranks_the_chunks_holding_the_rarer_words_and_still_ranks_by_the_whole_question(
    django_capture_on_commit_callbacks, monkeypatch
):
    collection = CollectionFactory(embedding_model=HASHING)
    pages = {f"table-{n}.md": f"# Table {n}\n\nThe table number {n} holds rows." for n in range(60)}
    pages["both.md"] = "# Wraparound\n\nFreezing old rows of a table avoids wraparound."
    pages["rare.md"] = "# Transaction ids\n\nWraparound happens when transaction ids run out."
    fill(collection, pages, django_capture_on_commit_callbacks)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    search.forget_lexeme_statistics()
    question = "table rows wraparound"

    monkeypatch.setattr(params, "LEXICAL_CANDIDATE_BUDGET", 10)
    narrowed = search.search(query=question, collections=[collection], limit=10, mode="lexical")
    monkeypatch.setattr(params, "LEXICAL_CANDIDATE_BUDGET", 0)
    whole = search.search(query=question, collections=[collection], limit=10, mode="lexical")
    search.forget_lexeme_statistics()

    # Narrowed to the chunks that say "wraparound", ranked against all three words: both.md first.
    assert [hit.source_name for hit in narrowed.hits] == ["both.md", "rare.md"]
    assert narrowed.lexical_candidates == "'wraparound'"
    # Without the budget every chunk holding any word is ranked, and the same chunk still comes first.
    assert whole.hits[0].source_name == "both.md"
    assert len(whole.hits) == 10 and whole.lexical_candidates is None


def test_query_shape_tells_a_term_from_a_sentence():
    assert search.query_shape("CASCADE with DROP") == 0.0
    assert search.query_shape("reclaim disk space fast") == pytest.approx(1 / 3)
    assert search.query_shape("How do I reclaim disk space after deleting many rows?") == 1.0


def test_a_rare_word_of_the_query_weighs_more_than_a_common_one(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=HASHING)
    common = {f"t{n}.md": f"# Notes {n}\n\nEvery table has rows; a table table holds data." for n in range(8)}
    rare = {"space.md": "# Notes x\n\nA tablespace names a directory where data files live."}
    fill(collection, {**common, **rare}, django_capture_on_commit_callbacks)

    result = search.search(query="table tablespace", collections=[collection], limit=3, mode="lexical")

    assert result.hits[0].source_name == "space.md"


def test_terms_are_weighted_by_inverse_document_frequency(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=HASHING)
    fill(
        collection,
        {f"d{n}.md": f"# D{n}\n\ncommon words here" + (" rare" if n == 0 else "") for n in range(4)},
        django_capture_on_commit_callbacks,
    )

    with connection.cursor() as cursor:
        terms = narrowing.weighted_terms(cursor, "'common' | 'rare' | 'miss' <-> 'rare'", None)
        excluded = narrowing.weighted_terms(cursor, "'common' & !'rare'", None)

    weights = dict(terms)
    assert weights["'common'"] == pytest.approx(np.log(1 + 0.5 / 4.5))  # in all four chunks
    assert weights["'rare'"] == pytest.approx(np.log(1 + 3.5 / 1.5))  # in one
    assert weights["'miss' <-> 'rare'"] == pytest.approx(np.log(1 + 4.5 / 0.5))  # a phrase: its rarest word
    assert excluded is None


@pytest.mark.parametrize(
    ("query", "evidence", "first"),
    [
        ("how does autovacuum reclaim storage from dead rows", 1.0, "twice.md"),
        ("how does autovacuum reclaim storage from dead rows", 0.0, "once.md"),
        ("autovacuum storage", 1.0, "once.md"),
    ],
)
def test_a_page_that_answers_in_two_places_outranks_one_better_chunk_for_a_sentence(
    query, evidence, first, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(params, "DOCUMENT_EVIDENCE", evidence)
    collection = CollectionFactory(embedding_model=HASHING)
    pages = {
        "once.md": "# Notes B\n\nAutovacuum reclaims storage from dead rows, quickly.",
        "twice.md": "# Notes A\n\n## One\n\nAutovacuum reclaims storage.\n\n## Two\n\nDead rows are reclaimed.",
        "other.md": "# Notes C\n\nNothing about it at all.",
    }
    fill(collection, pages, django_capture_on_commit_callbacks)

    # Three candidates of four chunks: being one says something.
    result = search.search(
        query=query,
        collections=[collection],
        limit=3,
        mode="lexical",
        params=search.SearchParams(candidates=3),
    )

    assert result.hits[0].source_name == first
    if first == "twice.md":
        assert [hit.source_name for hit in result.hits[:3]] == ["twice.md", "twice.md", "once.md"]
        assert result.hits[0].score == pytest.approx(result.hits[1].score)  # both carry the page's evidence


def test_no_evidence_is_counted_where_every_chunk_is_a_candidate(django_capture_on_commit_callbacks):
    collection = CollectionFactory(embedding_model=HASHING)
    pages = {
        "once.md": "# Notes B\n\nAutovacuum reclaims storage from dead rows, quickly.",
        "twice.md": "# Notes A\n\n## One\n\nAutovacuum reclaims storage.\n\n## Two\n\nDead rows are reclaimed.",
    }
    fill(collection, pages, django_capture_on_commit_callbacks)

    result = search.search(
        query="how does autovacuum reclaim storage from dead rows", collections=[collection], mode="lexical"
    )

    assert result.hits[0].source_name == "once.md"
