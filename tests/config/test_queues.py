"""Each kind of background work has a queue of its own (settings CELERY_TASK_QUEUES / CELERY_TASK_ROUTES), so that
workers of their own concurrency serve each; a worker started without -Q serves all of them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import knowledge.tasks
import mlmodels.tasks
from config.celery import app

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
    assert {q.name for q in app.conf.task_queues} == {"celery", "ingest", "ingest-retry", "training"}
    assert result.returncode == 0, result.stderr[-2000:]


def test_make_run_starts_a_worker_for_each_queue_and_beat_once():
    run = (ROOT / "scripts" / "run.py").read_text()
    started = [
        q
        for q in ("celery", "ingest,ingest-retry", "training")
        if re.search(rf'_start_worker\(\s*env, data_dir, "{q}"', run)
    ]

    assert started == ["celery", "ingest,ingest-retry", "training"]
    assert run.count("beat=True") == 1


def test_the_compose_stack_has_a_training_worker_and_an_ingestion_worker():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    queues = {
        name: service.get("environment", {}).get("WORKER_QUEUES")
        for name, service in services.items()
        if service.get("command") == ["worker"]
    }

    assert queues == {"worker": "celery,ingest,ingest-retry", "worker-training": "training"}
    assert (
        'WORKER_QUEUES:+--queues "$WORKER_QUEUES"' in (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
    )


@pytest.mark.django_db
def test_an_ingestion_task_sent_again_goes_to_the_retry_queue_ahead_of_new_uploads(monkeypatch):
    from knowledge.services import indexing

    sent = []
    monkeypatch.setattr(
        knowledge.tasks.ingest_document, "apply_async", lambda args, queue=None: sent.append((args, queue))
    )

    indexing.document_send(document_id=7)
    indexing.document_send(document_id=8, again=True)

    assert sent == [((7,), None), ((8,), "ingest-retry")]
    # A retry after a database error (autoretry) is sent to the same queue, not behind the uploads.
    assert knowledge.tasks.ingest_document.retry_kwargs == {"queue": "ingest-retry"}
    assert "ingest-retry" in {q.name for q in app.conf.task_queues}
