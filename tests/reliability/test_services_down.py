"""The broker unreachable, the database's connections terminated or refused: clear answers, nothing lost."""

import subprocess
import sys
import textwrap
from contextlib import contextmanager

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from config.celery import app
from knowledge import services as knowledge_services
from knowledge.models import Document
from tests.factories import CollectionFactory

DEAD_BROKER = "redis://127.0.0.1:9/0"  # nothing listens on the discard port


@contextmanager
def broker_at(url: str):
    """Tasks really sent to the broker at `url` (the test settings run them in-process otherwise)."""
    conf = app.conf
    saved = {key: conf[key] for key in ("task_always_eager", "broker_url", "broker_write_url")}
    conf.update(task_always_eager=False, broker_url=url, broker_write_url=url)
    _new_producer_pool()
    try:
        yield
    finally:
        conf.update(saved)
        _new_producer_pool()


def _new_producer_pool():
    # The app keeps its connection and producer pools for the broker it first used: drop them (without closing
    # them, since kombu shares producer pools per broker address) so that the next task goes to `url`.
    app._pool = None
    app.amqp._producer_pool = None


def _upload(client, collection, name, data):
    return client.post(
        "/api/documents/",
        {"collection": collection.slug, "files": [SimpleUploadedFile(name, data)]},
        HTTP_ACCEPT="application/json",
    )


@pytest.mark.django_db(transaction=True)
def test_an_upload_while_the_broker_is_down_is_stored_said_so_and_queued_once_it_is_back(client, staff_user):
    collection = CollectionFactory(slug="offline")
    client.force_login(staff_user)
    data = b"# Replication\n\nStreaming replication ships WAL records to standby servers."
    with broker_at(DEAD_BROKER):
        first = _upload(client, collection, "replication.md", data)
        again = _upload(client, collection, "replication.md", data)

    assert first.status_code == 201, first.content[:300]
    assert "queue is unreachable" in first.json()[0]["message"]
    assert "queue is unreachable" in again.json()[0]["message"]
    document = Document.objects.get(collection=collection)
    assert document.status == Document.Status.PENDING and document.unqueued

    # The broker is back (tasks run in-process here): the next sweep sends it at once, not an hour later.
    swept = knowledge_services.documents_recover_stalled()

    document.refresh_from_db()
    assert swept == [document.pk]
    assert document.status == Document.Status.READY and not document.unqueued


@pytest.mark.django_db(transaction=True)
def test_uploading_the_same_bytes_again_sends_a_task_that_never_reached_the_broker():
    collection = CollectionFactory(slug="offline-again")
    data = b"# Logs\n\nThe server log records connections."
    with broker_at(DEAD_BROKER):
        stored = knowledge_services.document_add(collection=collection, name="logs.md", content=data)
    assert stored.document.unqueued

    again = knowledge_services.document_add(collection=collection, name="logs.md", content=data)

    document = Document.objects.get(pk=stored.document.pk)
    assert again.outcome == "unchanged" and "unreachable" not in again.message
    assert document.status == Document.Status.READY and not document.unqueued


POOLED_QUERY_AFTER_TERMINATE = textwrap.dedent(
    """
    import os, sys, django, psycopg
    os.environ["DJANGO_DB_POOL_MAX_SIZE"] = "2"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    django.setup()
    from django.db import connection
    connection.settings_dict["NAME"] = sys.argv[1]  # the test database, as the test runner points at it
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    connection.close()  # back to the pool, still open
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits until the backend is gone
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        print("answered", cursor.fetchone()[0])
    """
)


@pytest.mark.django_db
def test_a_pooled_connection_the_server_terminated_is_replaced_not_handed_out():
    result = subprocess.run(
        [sys.executable, "-c", POOLED_QUERY_AFTER_TERMINATE, connection.settings_dict["NAME"]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=django_settings.BASE_DIR,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "answered 1" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_readyz_is_unavailable_while_the_database_refuses_new_connections(client):
    assert client.get("/readyz").status_code == 200
    connection.ensure_connection()
    name = connection.settings_dict["NAME"]
    params = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**params) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # this process's kept connection still works
            response = client.get("/readyz")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


@pytest.mark.django_db(transaction=True)
def test_a_reembed_or_a_training_asked_for_while_the_broker_is_down_is_kept_and_said_so():
    from mlmodels import services as ml_services
    from mlmodels.models import ModelVersion

    collection = CollectionFactory(slug="offline-reembed")
    with broker_at(DEAD_BROKER):
        knowledge_services.collection_reembed(collection=collection, model_name="hashing-384")
        version = ml_services.model_version_request(kind="titanic")

    collection.refresh_from_db()
    assert collection.reembed_target_model == "hashing-384"
    assert "task queue was unreachable" in collection.reembed_error
    assert ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.PENDING
