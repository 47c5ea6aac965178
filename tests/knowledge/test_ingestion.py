import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from core.errors import InvalidInput
from knowledge import search, services
from knowledge.embeddings import HASHING, MINILM, get_embedder
from knowledge.models import Chunk, Document
from tests import documents
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

MANUAL = (
    "# Maintenance\n\nRoutine vacuuming keeps tables healthy. Autovacuum does it for you.\n\n"
    "## Autovacuum\n\nThe autovacuum launcher starts a worker every minute for each database.\n\n"
    "## Statistics\n\nANALYZE collects statistics about the contents of tables."
)


@pytest.fixture
def collection():
    return CollectionFactory(slug="manual", embedding_model=HASHING)


def add(collection, name, data, capture):
    with capture(execute=True):
        return services.document_add(collection=collection, name=name, content=data)


def test_adding_a_document_indexes_it_in_the_background(collection, django_capture_on_commit_callbacks):
    added = add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    chunks = list(document.chunks.order_by("position"))
    assert added.outcome == "created"
    assert document.status == Document.Status.READY
    assert document.progress == 1.0
    assert document.title == "Maintenance"
    assert document.media_type == "text/markdown"
    assert document.embedding_model == HASHING
    assert document.chunk_count == len(chunks) >= 1
    assert document.token_count == sum(chunk.token_count for chunk in chunks)
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    text = document.content.text
    for chunk in chunks:
        assert text[chunk.start_offset : chunk.end_offset] == chunk.text
        assert chunk.embedding is not None and len(chunk.embedding) == 384
        assert chunk.search_vector
        assert chunk.embedding_model == HASHING
    assert {chunk.section for chunk in chunks} >= {"Maintenance › Autovacuum", "Maintenance › Statistics"}


def test_same_bytes_twice_return_the_existing_document(collection, django_capture_on_commit_callbacks):
    first = add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)

    again = add(collection, "copy-of-maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)

    assert again.outcome == "unchanged"
    assert again.document.pk == first.document.pk
    assert "same content as maintenance.md" in again.message
    assert Document.objects.filter(collection=collection).count() == 1


def test_changed_file_under_the_same_name_becomes_a_new_version(
    collection, django_capture_on_commit_callbacks
):
    first = add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)
    old_file = first.document.file.name

    changed = add(
        collection,
        "maintenance.md",
        b"# Maintenance\n\nVACUUM FULL rewrites the table.",
        django_capture_on_commit_callbacks,
    )

    document = Document.objects.get(pk=first.document.pk)
    assert changed.outcome == "updated"
    assert document.version == 2
    assert document.status == Document.Status.READY
    assert [chunk.text for chunk in document.chunks.all()] == ["VACUUM FULL rewrites the table."]
    assert Chunk.objects.filter(collection=collection).count() == 1
    assert not document.file.storage.exists(old_file)


def test_running_the_ingestion_again_changes_nothing(collection, django_capture_on_commit_callbacks):
    added = add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)
    before = list(
        Chunk.objects.filter(document=added.document).order_by("position").values_list("pk", "text")
    )

    services.document_ingest(document_id=added.document.pk, task_id="a-duplicate-delivery")

    after = list(Chunk.objects.filter(document=added.document).order_by("position").values_list("pk", "text"))
    assert after == before


def test_reingest_replaces_chunks_instead_of_appending(collection, django_capture_on_commit_callbacks):
    added = add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)
    count = added.document.chunks.count()

    with django_capture_on_commit_callbacks(execute=True):
        services.document_reingest(document=added.document)

    assert Chunk.objects.filter(document=added.document).count() == count
    assert Document.objects.get(pk=added.document.pk).status == Document.Status.READY


def test_an_empty_file_is_refused_before_it_is_stored(collection):
    with pytest.raises(services.EmptyDocument, match=r"empty\.txt is empty"):
        services.document_add(collection=collection, name="empty.txt", content=b"")

    assert not Document.objects.filter(source_name="empty.txt").exists()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("locked.pdf", documents.pdf_bytes(["secret"], password="pw"), "encrypted"),
        ("cut.pdf", documents.pdf_bytes(["some words here"])[:300], "not a readable PDF"),
        ("binary.txt", bytes(range(256)) * 40, "Unsupported type"),
        ("app.html", b"<html><body><script>run()</script></body></html>", "no readable content"),
        ("bomb.docx", documents.zip_bomb_docx_bytes(), "ZIP bomb"),
    ],
)
def test_bad_files_end_failed_with_a_reason_and_no_chunks(
    collection, django_capture_on_commit_callbacks, name, data, reason
):
    added = add(collection, name, data, django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.FAILED
    assert reason in document.error
    assert document.chunks.count() == 0


def test_file_over_the_limit_is_refused_before_anything_is_stored(collection, settings):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 100

    with pytest.raises(services.DocumentTooLarge, match="limit"):
        services.document_add(collection=collection, name="big.txt", content=b"x" * 101)

    assert Document.objects.count() == 0


def test_a_file_just_over_the_limit_is_told_in_bytes_where_megabytes_would_read_as_equal(
    collection, settings
):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 50 * 1024 * 1024

    with pytest.raises(services.DocumentTooLarge) as refused:
        services.document_add(collection=collection, name="big.txt", content=b"x" * (50 * 1024 * 1024 + 10))

    assert "52,428,810 bytes; the limit is 52,428,800 bytes" in str(refused.value)


def test_a_file_read_only_up_to_the_limit_is_told_as_over_it_not_as_a_size_it_does_not_have(
    collection, settings
):
    import io

    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000

    with pytest.raises(services.DocumentTooLarge) as streamed:
        services.document_add(collection=collection, name="big.txt", content=io.BytesIO(b"x" * 5000))
    with pytest.raises(services.DocumentTooLarge) as whole:
        services.document_add(collection=collection, name="big.txt", content=b"x" * 5000)

    assert str(streamed.value) == "big.txt is larger than the limit of 1,000 bytes."
    assert str(whole.value) == "big.txt is 5,000 bytes; the limit is 1,000 bytes."
    assert not Document.objects.exists()


def test_a_document_held_by_a_live_worker_is_left_alone(collection):
    added = services.document_add(collection=collection, name="m.md", content=MANUAL.encode(), enqueue=False)
    Document.objects.filter(pk=added.document.pk).update(
        status=Document.Status.PROCESSING, task_id="other", heartbeat_at=timezone.now()
    )

    services.document_ingest(document_id=added.document.pk, task_id="mine")

    assert Document.objects.get(pk=added.document.pk).status == Document.Status.PROCESSING
    assert Chunk.objects.count() == 0


def test_a_document_whose_worker_died_is_taken_over(collection, settings):
    added = services.document_add(collection=collection, name="m.md", content=MANUAL.encode(), enqueue=False)
    long_ago = timezone.now() - timedelta(seconds=settings.KNOWLEDGE_INGEST_STALE_SECONDS + 5)
    Document.objects.filter(pk=added.document.pk).update(
        status=Document.Status.PROCESSING, task_id="dead", heartbeat_at=long_ago, attempts=1
    )

    document = services.document_ingest(document_id=added.document.pk, task_id="rescuer")

    assert document.status == Document.Status.READY
    assert document.attempts == 2


def test_a_redelivered_task_takes_its_own_document_back_at_once(collection):
    added = services.document_add(collection=collection, name="m.md", content=MANUAL.encode(), enqueue=False)
    Document.objects.filter(pk=added.document.pk).update(
        status=Document.Status.PROCESSING, task_id="same-task", heartbeat_at=timezone.now(), attempts=1
    )

    document = services.document_ingest(document_id=added.document.pk, task_id="same-task")

    assert document.status == Document.Status.READY


def test_a_document_interrupted_too_often_fails_with_the_reason(collection, settings):
    added = services.document_add(collection=collection, name="m.md", content=MANUAL.encode(), enqueue=False)
    Document.objects.filter(pk=added.document.pk).update(
        status=Document.Status.PROCESSING,
        task_id="dead",
        attempts=settings.KNOWLEDGE_INGEST_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(days=1),
    )

    document = services.document_ingest(document_id=added.document.pk, task_id="another")

    assert document.status == Document.Status.FAILED
    assert "interrupted" in document.error


def test_stalled_and_forgotten_documents_are_queued_again(
    collection, settings, django_capture_on_commit_callbacks
):
    stalled = services.document_add(
        collection=collection, name="a.md", content=b"# A\n\nalpha", enqueue=False
    )
    waiting = services.document_add(collection=collection, name="b.md", content=b"# B\n\nbeta", enqueue=False)
    fresh = services.document_add(collection=collection, name="c.md", content=b"# C\n\ngamma", enqueue=False)
    Document.objects.filter(pk=stalled.document.pk).update(
        status=Document.Status.PROCESSING, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    Document.objects.filter(pk=waiting.document.pk).update(updated_at=timezone.now() - timedelta(days=1))

    with django_capture_on_commit_callbacks(execute=True):
        requeued = services.documents_recover_stalled()

    assert sorted(requeued) == sorted([stalled.document.pk, waiting.document.pk])
    assert Document.objects.get(pk=stalled.document.pk).status == Document.Status.READY
    assert Document.objects.get(pk=waiting.document.pk).status == Document.Status.READY
    assert Document.objects.get(pk=fresh.document.pk).status == Document.Status.PENDING


def test_documents_an_older_index_version_made_are_indexed_again_keeping_their_chunks_until_then(
    collection, django_capture_on_commit_callbacks
):
    first = add(collection, "a.md", MANUAL.encode(), django_capture_on_commit_callbacks).document
    second = add(collection, "b.md", b"# B\n\nbeta gamma", django_capture_on_commit_callbacks).document
    third = add(collection, "c.md", b"# C\n\ndelta", django_capture_on_commit_callbacks).document
    assert Document.objects.get(pk=third.pk).index_version == services.indexing.INDEX_VERSION
    old_chunks = set(Chunk.objects.filter(document=first).values_list("pk", flat=True))
    Document.objects.filter(pk__in=[first.pk, second.pk]).update(index_version=1)

    with django_capture_on_commit_callbacks() as sends:
        queued = services.documents_refresh_outdated(limit=1)

    # One at a time, oldest first; until its task runs it keeps serving its old chunks.
    assert queued == [first.pk]
    assert Document.objects.get(pk=first.pk).status == Document.Status.PENDING
    assert set(Chunk.objects.filter(document=first).values_list("pk", flat=True)) == old_chunks
    hits = search.search(query="autovacuum launcher", collections=[collection], limit=5).hits
    assert first.pk in {hit.document_id for hit in hits}
    # Nothing more is queued while a document waits, so that uploads never queue behind a re-chunking.
    assert services.documents_refresh_outdated() == []

    for send in sends:
        send()
    refreshed = Document.objects.get(pk=first.pk)
    assert refreshed.status == Document.Status.READY
    assert refreshed.index_version == services.indexing.INDEX_VERSION
    new_chunks = set(Chunk.objects.filter(document=first).values_list("pk", flat=True))
    assert new_chunks and not new_chunks & old_chunks
    with django_capture_on_commit_callbacks(execute=True):
        assert services.documents_refresh_outdated() == [second.pk]
    assert Document.objects.get(pk=second.pk).index_version == services.indexing.INDEX_VERSION
    assert services.documents_refresh_outdated() == []


@pytest.mark.slow
def test_reembedding_switches_the_collection_only_when_every_chunk_has_the_new_vector(
    collection, django_capture_on_commit_callbacks
):
    added = add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)
    old_vectors = {c.pk: np.array(c.embedding) for c in Chunk.objects.filter(collection=collection)}

    services.collection_reembed(collection=collection, model_name=MINILM)  # queued, not yet run
    collection.refresh_from_db()
    assert collection.embedding_model == HASHING
    assert collection.reembed_target_model == MINILM

    services.collection_reembed_run(collection_id=collection.pk)

    collection.refresh_from_db()
    assert collection.embedding_model == MINILM
    assert collection.reembed_target_model == ""
    assert collection.reembed_progress == 1.0
    chunks = list(Chunk.objects.filter(collection=collection).select_related("document"))
    assert {c.embedding_model for c in chunks} == {MINILM}
    assert all(c.pending_embedding is None for c in chunks)
    minilm = get_embedder(MINILM)
    for chunk in chunks:
        assert not np.allclose(chunk.embedding, old_vectors[chunk.pk])
        assert float(np.dot(chunk.embedding, minilm.embed_query(chunk.text))) > 0.5
    assert Document.objects.get(pk=added.document.pk).embedding_model == MINILM


def test_reembed_command_switches_in_process(collection, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    add(collection, "maintenance.md", MANUAL.encode(), django_capture_on_commit_callbacks)

    call_command("reembed", collection=collection.slug, model=HASHING, now=True)

    collection.refresh_from_db()
    assert collection.embedding_model == HASHING and collection.reembed_target_model == ""


def test_reembed_command_refuses_an_unknown_model(collection):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="not installed"):
        call_command("reembed", collection=collection.slug, model="nope")


def page(number: int) -> bytes:
    return (
        f"# Page {number}\n\nPage {number} explains setting number {number} and when to change it.".encode()
    )


def test_importing_many_files_in_process_settles_every_file_once_through_the_pipeline(collection):
    files = [(f"page-{n}.md", lambda n=n: page(n)) for n in range(11)]
    files.insert(5, ("scripts-only.html", lambda: b"<html><script>var x = 1;</script></html>"))
    files.insert(8, ("empty.txt", lambda: b""))

    settled = list(
        services.documents_import(collection=collection, files=files, index_now=True, group_size=3)
    )

    outcomes = {item.name: item for item in settled}
    assert len(settled) == len(files) == len(outcomes)
    assert outcomes["empty.txt"].outcome == "rejected" and outcomes["empty.txt"].document is None
    assert "empty.txt is empty" in outcomes["empty.txt"].message
    assert outcomes["scripts-only.html"].document.status == Document.Status.FAILED
    ready = [item.document for item in settled if item.name.startswith("page-")]
    assert all(document.status == Document.Status.READY and document.chunk_count == 1 for document in ready)
    assert Chunk.objects.get(document__source_name="page-7.md").text.startswith("Page 7 explains")
    assert Chunk.objects.filter(collection=collection).count() == 11


def test_an_import_stopped_part_way_leaves_the_group_in_flight_ready_to_be_taken_up_again(collection):
    files = [(f"page-{n}.md", lambda n=n: page(n)) for n in range(9)]
    importing = services.documents_import(collection=collection, files=files, index_now=True, group_size=3)

    first = next(importing)  # the first group is written while the second is being embedded
    importing.close()

    statuses = dict(Document.objects.values_list("source_name", "status"))
    assert first.document.status == Document.Status.READY
    assert [statuses[f"page-{n}.md"] for n in range(3)] == [Document.Status.READY] * 3
    assert [statuses[f"page-{n}.md"] for n in range(3, 6)] == [Document.Status.PENDING] * 3
    assert not Document.objects.filter(status=Document.Status.PROCESSING).exists()
    assert set(
        Document.objects.filter(status=Document.Status.PENDING).values_list("attempts", flat=True)
    ) == {0}

    again = list(services.documents_import(collection=collection, files=files, index_now=True, group_size=3))

    assert {item.name for item in again} == {name for name, _ in files}
    assert Document.objects.filter(status=Document.Status.READY).count() == 9


def test_an_import_that_loses_the_database_while_parsing_leaves_nothing_processing(collection, monkeypatch):
    from django.db import OperationalError

    from knowledge.services import indexing

    parse = indexing._parse_and_chunk

    def flaky(document, collection):
        if document.source_name == "page-4.md":
            raise OperationalError("server closed the connection unexpectedly")
        return parse(document, collection)

    monkeypatch.setattr(indexing, "_parse_and_chunk", flaky)
    files = [(f"page-{n}.md", lambda n=n: page(n)) for n in range(6)]

    with pytest.raises(OperationalError):
        list(services.documents_import(collection=collection, files=files, index_now=True, group_size=3))

    assert not Document.objects.filter(status=Document.Status.PROCESSING).exists()
    # Both groups in flight (the first still being embedded when the second failed) wait for the next import.
    assert Document.objects.filter(status=Document.Status.PENDING).count() == 6


def test_a_refused_file_in_an_import_is_not_stored_and_the_files_around_it_are(collection, settings):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    files = [
        ("first.md", lambda: page(1)),
        ("large.txt", lambda: b"x" * 1001),
        ("last.md", lambda: page(2)),
    ]

    settled = list(services.documents_import(collection=collection, files=files, index_now=True))

    # Refused at once, it settles before the files indexed around it.
    assert [(item.name, item.outcome) for item in settled] == [
        ("large.txt", "rejected"),
        ("first.md", "created"),
        ("last.md", "created"),
    ]
    assert isinstance(settled[0].error, services.DocumentTooLarge) and settled[0].document is None
    assert settled[0].message == "large.txt is larger than the limit of 1,000 bytes."
    assert dict(Document.objects.values_list("source_name", "status")) == {
        "first.md": Document.Status.READY,
        "last.md": Document.Status.READY,
    }


def test_a_document_deleted_while_an_import_indexes_it_comes_back_without_a_document(collection, monkeypatch):
    from knowledge.services import indexing

    write = indexing._write_embedded

    def delete_then_write(embedded):
        Document.objects.filter(source_name="gone.md").delete()  # embedded, not yet written
        write(embedded)

    monkeypatch.setattr(indexing, "_write_embedded", delete_then_write)
    files = [("gone.md", lambda: page(1))]

    [item] = services.documents_import(collection=collection, files=files, index_now=True)

    assert (item.name, item.outcome, item.document) == ("gone.md", "created", None)
    assert not Document.objects.exists()


def test_a_file_that_cannot_be_read_is_refused_by_name_and_the_others_are_queued(
    collection, django_capture_on_commit_callbacks
):
    def vanished() -> bytes:
        raise FileNotFoundError(2, "No such file or directory")

    files = [("gone.md", vanished), ("here.md", lambda: page(1))]

    with django_capture_on_commit_callbacks(execute=True):  # the queued task runs (eagerly) once committed
        settled = list(services.documents_import(collection=collection, files=files, index_now=False))

    assert [(item.name, item.outcome) for item in settled] == [
        ("gone.md", "rejected"),
        ("here.md", "created"),
    ]
    assert isinstance(settled[0].error, services.DocumentUnreadable)
    assert settled[0].message == "gone.md could not be read (No such file or directory)."
    assert settled[1].document.status == Document.Status.PENDING  # queued, not indexed in this process
    assert list(Document.objects.values_list("source_name", "status")) == [("here.md", Document.Status.READY)]


def test_a_title_for_many_files_is_refused_before_any_is_stored(collection):
    files = [("a.md", lambda: page(1)), ("b.md", lambda: page(2))]

    with pytest.raises(InvalidInput, match="only be given when one file"):
        services.documents_import(collection=collection, files=files, index_now=False, title="Both")

    assert not Document.objects.exists()


def test_importing_one_file_raises_its_refusal_and_stores_nothing(collection):
    with pytest.raises(services.EmptyDocument, match=r"empty\.md is empty"):
        services.document_import(collection=collection, name="empty.md", content=b"", index_now=True)

    assert not Document.objects.exists()


def test_importing_one_file_now_indexes_it_and_a_failed_one_is_tried_again(collection, settings):
    first = services.document_import(
        collection=collection, name="m.md", content=MANUAL.encode(), index_now=True
    )
    Document.objects.filter(pk=first.document.pk).update(status=Document.Status.FAILED, error="worker died")

    again = services.document_import(
        collection=collection, name="m.md", content=MANUAL.encode(), index_now=True
    )

    assert first.outcome == "created" and first.document.status == Document.Status.READY
    assert again.outcome == "unchanged" and again.document.pk == first.document.pk
    assert again.document.status == Document.Status.READY and again.document.error == ""
    assert again.document.chunk_count == Chunk.objects.filter(document=first.document).count() > 0


@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_alone_a_document_whose_task_is_alive_however_long_it_parses(monkeypatch, settings):
    # The heartbeat comes from a thread of the task's own: a parse longer than the staleness limit (here 3 s,
    # so a beat every second) does not make the document look abandoned.
    from knowledge import parsing
    from knowledge.services import indexing

    settings.KNOWLEDGE_INGEST_STALE_SECONDS = 3
    collection = CollectionFactory(slug="slow", embedding_model=HASHING)
    added = services.document_add(collection=collection, name="m.md", content=MANUAL.encode(), enqueue=False)
    real_parse = parsing.parse
    swept = []

    def slow_parse(*args, **kwargs):
        time.sleep(4.5)
        swept.append(indexing.documents_recover_stalled())
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(parsing, "parse", slow_parse)

    document = services.document_ingest(document_id=added.document.pk, task_id="alive")

    assert swept == [[]]
    assert document.status == Document.Status.READY
    assert document.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweep_skips_a_document_whose_row_a_writer_holds_and_takes_it_once_released(monkeypatch):
    import threading

    from django.db import connection, transaction

    from knowledge.services import indexing

    collection = CollectionFactory(slug="held", embedding_model=HASHING)
    added = services.document_add(collection=collection, name="m.md", content=MANUAL.encode(), enqueue=False)
    Document.objects.filter(pk=added.document.pk).update(
        status=Document.Status.PROCESSING, task_id="writer", heartbeat_at=timezone.now() - timedelta(days=1)
    )
    locked, release = threading.Event(), threading.Event()

    def writer():
        with transaction.atomic():
            Document.objects.select_for_update().get(pk=added.document.pk)
            locked.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert locked.wait(30)
    try:
        assert indexing.documents_recover_stalled() == []
    finally:
        release.set()
        thread.join(30)
    sent = []
    monkeypatch.setattr(
        indexing, "document_send", lambda *, document_id, again: sent.append((document_id, again)) or True
    )
    assert indexing.documents_recover_stalled() == [added.document.pk]
    assert sent == [(added.document.pk, True)]  # to the retry queue, ahead of the uploads queued since
