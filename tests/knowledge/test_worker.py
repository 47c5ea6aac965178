"""Real Celery worker processes against the real broker (Redis in CI, the file broker without a server)."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from knowledge import services
from knowledge.embeddings import HASHING, MINILM
from knowledge.models import Chunk, Document
from tests.factories import CollectionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
USES_FILE_BROKER = str(settings.CELERY_BROKER_URL).startswith("filesystem://")


@pytest.fixture(autouse=True)
def _queue_for_real():
    """Tasks go to the broker, as in production, instead of running inside the test process."""
    from config.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = eager


def worker_environment(**extra: str) -> dict[str, str]:
    """The worker sees what this test process sees: its test database, media folder and broker."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        CELERY_TASK_ALWAYS_EAGER="0",
        DJANGO_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    database = connection.settings_dict
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = (
            f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST'] or 'localhost'}"
            f":{database['PORT'] or 5432}/{database['NAME']}"
        )
    else:
        env["KB_EMBEDDED_DB_NAME"] = database["NAME"]
        env["KB_DATA_DIR"] = str(settings.DATA_DIR)
    env.update(extra)
    return env


@contextmanager
def celery_worker(env: dict[str, str], *extra_args: str):
    log = open(settings.MEDIA_ROOT.parent / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            *extra_args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    states = list(Document.objects.values_list("source_name", "status", "progress", "attempts", "error"))
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; documents: {states}")


def long_document() -> bytes:
    topics = ["vacuum", "index", "replication", "backup", "planner", "locking", "partitioning", "statistics"]
    sections = []
    for number in range(60):
        topic = topics[number % len(topics)]
        paragraphs = [
            f"Paragraph {number}.{p} explains how {topic} behaves under load {number * p}, which settings matter, "
            f"and what an administrator watches for when {topic} work falls behind on a busy server."
            for p in range(8)
        ]
        sections.append(f"## Section {number}: {topic}\n\n" + "\n\n".join(paragraphs))
    return ("# Operations handbook\n\n" + "\n\n".join(sections)).encode()


def test_a_worker_process_indexes_a_document_queued_by_the_web_process(tmp_path):
    collection = CollectionFactory(embedding_model=HASHING)
    env = worker_environment()

    with celery_worker(env):
        added = services.document_add(
            collection=collection, name="notes.md", content=b"# Notes\n\nThe worker indexed this text."
        )
        document = wait_for(
            lambda: Document.objects.filter(pk=added.document.pk, status=Document.Status.READY).first(),
            timeout=90,
            what="the worker to index the document",
        )

    assert document.chunk_count == 1
    assert Chunk.objects.get(document=document).text == "The worker indexed this text."


def test_a_worker_killed_mid_document_leaves_it_to_the_redelivered_task_without_duplicates():
    collection = CollectionFactory(embedding_model=MINILM)
    # Small batches make the worker report progress several times while it embeds (every 8 batches), so the
    # test sees it part-way through instead of racing a single jump from parsed to nearly done.
    small_batches = {"KNOWLEDGE_EMBEDDING_BATCH_SIZE": "4"}
    if USES_FILE_BROKER:
        # The file broker forgets a message once read; the periodic recovery sweep re-queues the document.
        env = worker_environment(
            KNOWLEDGE_INGEST_STALE_SECONDS="5", KNOWLEDGE_RECOVERY_INTERVAL_SECONDS="1", **small_batches
        )
        rescue_args: tuple[str, ...] = (
            "--beat",
            "--schedule",
            str(settings.MEDIA_ROOT.parent / "beat-schedule"),
        )
    else:
        # Redis keeps the unacknowledged message and hands it out again once its visibility timeout passes.
        env = worker_environment(
            CELERY_BROKER_TRANSPORT_OPTIONS='{"visibility_timeout": 5, "unacked_restore_interval": 1, '
            '"unacked_restore_throttle": 1}',
            **small_batches,
        )
        rescue_args = ()

    with celery_worker(env) as first:
        added = services.document_add(collection=collection, name="handbook.md", content=long_document())
        wait_for(
            lambda: Document.objects.filter(
                pk=added.document.pk, status=Document.Status.PROCESSING, progress__gte=0.3, progress__lt=0.9
            ).exists(),
            timeout=300,
            what="the first worker to be half-way through",
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    interrupted = Document.objects.get(pk=added.document.pk)
    assert interrupted.status == Document.Status.PROCESSING
    assert Chunk.objects.filter(document=interrupted).count() == 0

    with celery_worker(env, *rescue_args):
        document = wait_for(
            lambda: Document.objects.filter(pk=added.document.pk, status=Document.Status.READY).first(),
            timeout=420,
            what="the re-delivered task to finish the document",
        )

    positions = list(
        Chunk.objects.filter(document=document).order_by("position").values_list("position", flat=True)
    )
    assert document.attempts == 2
    assert document.chunk_count == len(positions) > 50
    assert positions == list(range(len(positions)))
