"""Each kind of background work has a queue of its own (settings CELERY_TASK_QUEUES / CELERY_TASK_ROUTES), so that
workers of their own concurrency serve each; a worker started without -Q serves all of them."""

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

import knowledge.tasks
import mlmodels.tasks
from config.celery import app
from knowledge.models import Document
from tests.factories import CollectionFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("knowledge.tasks.ingest_document", "ingest"),
        ("mlmodels.tasks.train_model_version", "training"),
        ("knowledge.tasks.reembed_collection", "celery"),
        ("knowledge.tasks.recover_stalled_documents", "celery"),
        ("mlmodels.tasks.recover_stalled_training", "celery"),
    ],
)
def test_each_task_goes_to_the_queue_of_its_kind(task, queue):
    assert knowledge.tasks and mlmodels.tasks  # imported: their tasks are registered
    assert task in app.tasks
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_a_worker_without_queues_named_serves_every_queue():
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "report"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert {q.name for q in app.conf.task_queues} == {
        "celery",
        "ingest",
        "ingest-retry",
        "ingest-large",
        "ingest-large-retry",
        "training",
    }
    assert result.returncode == 0, result.stderr[-2000:]


def test_make_run_starts_a_worker_for_each_queue_and_beat_once():
    run = (ROOT / "scripts" / "run.py").read_text()
    queues = ("celery", "ingest,ingest-retry", "ingest-large,ingest-large-retry", "training")
    started = [q for q in queues if re.search(rf'_start_worker\(\s*env, data_dir, "{q}"', run)]

    assert started == list(queues)
    assert run.count("beat=True") == 1


def test_the_compose_stack_has_a_training_worker_a_large_document_worker_and_an_ingestion_worker():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    queues = {
        name: service.get("environment", {}).get("WORKER_QUEUES")
        for name, service in services.items()
        if service.get("command") == ["worker"]
    }

    assert queues == {
        "worker": "celery,ingest,ingest-retry",
        "worker-large": "ingest-large,ingest-large-retry",
        "worker-training": "training",
    }
    assert services["worker-large"]["environment"]["WORKER_CONCURRENCY"] == "1"
    assert (
        'WORKER_QUEUES:+--queues "$WORKER_QUEUES"' in (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
    )


def _sent_queues(monkeypatch):
    """The queue each ingestion task is sent to, as given to apply_async (the broker is not reached)."""
    sent = []
    monkeypatch.setattr(
        knowledge.tasks.ingest_document,
        "apply_async",
        lambda args, queue=None, **options: sent.append((args[0], queue)),
    )
    return sent


@pytest.mark.django_db
def test_a_document_is_sent_to_the_queue_of_its_size_and_sent_again_to_that_sides_retry_queue(
    monkeypatch, settings, django_capture_on_commit_callbacks
):
    from knowledge import services

    settings.KNOWLEDGE_LARGE_DOCUMENT_BYTES = 1000
    sent = _sent_queues(monkeypatch)
    collection = CollectionFactory(slug="by-size")

    with django_capture_on_commit_callbacks(execute=True):
        small = services.document_add(
            collection=collection, name="small.md", content=b"# Small\n\n" + b"a " * 400
        )
        large = services.document_add(
            collection=collection, name="large.md", content=b"# Large\n\n" + b"a " * 500
        )
    with django_capture_on_commit_callbacks(execute=True):
        Document.objects.update(
            status=Document.Status.PROCESSING, heartbeat_at=timezone.now() - timedelta(days=1)
        )
        recovered = services.documents_recover_stalled()

    assert (small.document.size_bytes, large.document.size_bytes) == (809, 1009)
    assert sent[:2] == [(small.document.pk, "ingest"), (large.document.pk, "ingest-large")]
    assert sorted(recovered) == sorted([small.document.pk, large.document.pk])
    assert sorted(sent[2:]) == sorted(
        [(small.document.pk, "ingest-retry"), (large.document.pk, "ingest-large-retry")]
    )


@pytest.mark.parametrize(
    ("came_from", "retried_to"),
    [
        ("ingest", "ingest-retry"),
        ("ingest-retry", "ingest-retry"),
        ("ingest-large", "ingest-large-retry"),
        ("ingest-large-retry", "ingest-large-retry"),
    ],
)
def test_an_ingestion_task_retried_after_a_database_error_stays_on_its_side_ahead_of_new_uploads(
    monkeypatch, came_from, retried_to
):
    from celery.exceptions import Retry
    from django.db import OperationalError

    from knowledge import services

    def database_gone(**kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(services, "document_ingest", database_gone)
    sent = []
    monkeypatch.setattr(
        knowledge.tasks.ingest_document, "apply_async", lambda *args, **options: sent.append(options["queue"])
    )
    task = knowledge.tasks.ingest_document
    task.push_request(
        id="t-1",
        args=(7,),
        kwargs={},
        retries=0,
        called_directly=False,
        delivery_info={"routing_key": came_from},
    )
    try:
        with pytest.raises(Retry):
            task.run(7)
    finally:
        task.pop_request()

    assert sent == [retried_to]


@pytest.mark.django_db
def test_an_ingestion_task_sent_again_goes_to_the_retry_queue_ahead_of_new_uploads(monkeypatch):
    from knowledge.services import indexing

    sent = _sent_queues(monkeypatch)

    indexing.document_send(document_id=7)
    indexing.document_send(document_id=8, again=True)

    # Neither exists (deleted since): a task that will find nothing goes to the small side.
    assert sent == [(7, "ingest"), (8, "ingest-retry")]
    assert {"ingest", "ingest-retry"} <= {q.name for q in app.conf.task_queues}
