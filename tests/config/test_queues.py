"""Each kind of background work has a queue of its own (settings CELERY_TASK_QUEUES / CELERY_TASK_ROUTES), so that
workers of their own concurrency serve each; a worker started without -Q serves all of them."""

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
    assert {q.name for q in app.conf.task_queues} == {"celery", "ingest", "training"}
    assert result.returncode == 0, result.stderr[-2000:]


def test_make_run_starts_a_worker_for_each_queue_and_beat_once():
    run = (ROOT / "scripts" / "run.py").read_text()
    started = [q for q in ("celery", "ingest", "training") if f'_start_worker(env, data_dir, "{q}"' in run]

    assert started == ["celery", "ingest", "training"]
    assert run.count("beat=True") == 1


def test_the_compose_stack_has_a_training_worker_and_an_ingestion_worker():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    queues = {
        name: service.get("environment", {}).get("WORKER_QUEUES")
        for name, service in services.items()
        if service.get("command") == ["worker"]
    }

    assert queues == {"worker": "celery,ingest", "worker-training": "training"}
    assert (
        'WORKER_QUEUES:+--queues "$WORKER_QUEUES"' in (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
    )
