"""A real worker whose database connection the server terminates mid-document (a failover, pg_terminate_backend)
retries the document on a new connection: it ends READY, once, with nothing left PROCESSING."""

import psycopg
import pytest
from django.db import connection

from knowledge import services
from knowledge.embeddings import MINILM
from knowledge.models import Chunk, Document
from tests.factories import CollectionFactory
from tests.knowledge.test_worker import (  # noqa: F401 - _queue_for_real: autouse, tasks go to the broker
    _queue_for_real,
    celery_worker,
    long_document,
    wait_for,
    worker_environment,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _terminate_other_connections() -> int:
    """Terminate every connection to the test database but this process's own; returns how many."""
    params = {**connection.get_connection_params(), "autocommit": True}
    with psycopg.connect(**params) as admin:
        own = admin.execute("SELECT pg_backend_pid()").fetchone()[0]
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s, %s)",
            [own, connection.connection.info.backend_pid if connection.connection else own],
        ).fetchall()
    return len(rows)


def test_a_worker_whose_connection_is_terminated_mid_document_retries_it_to_the_end():
    collection = CollectionFactory(embedding_model=MINILM)
    connection.ensure_connection()
    # Small batches: the worker writes its progress (on its connection) many times while it embeds.
    env = worker_environment(KNOWLEDGE_EMBEDDING_BATCH_SIZE="4")

    with celery_worker(env):
        added = services.document_add(collection=collection, name="handbook.md", content=long_document())
        wait_for(
            lambda: Document.objects.filter(
                pk=added.document.pk, status=Document.Status.PROCESSING, progress__gte=0.3, progress__lt=0.9
            ).exists(),
            timeout=300,
            what="the worker to be half-way through",
        )
        terminated = _terminate_other_connections()
        document = wait_for(
            lambda: Document.objects.filter(pk=added.document.pk, status=Document.Status.READY).first(),
            timeout=300,
            what="the retried task to index the document",
        )

    assert terminated >= 1  # the worker's connection, mid-task
    assert document.error == "" and document.chunk_count > 10
    assert Chunk.objects.filter(document=document).count() == document.chunk_count
    assert not Document.objects.exclude(status=Document.Status.READY).exists()
