"""A real Celery worker process trains a version queued by the web process (the file broker without a server)."""

import os
import time

import pytest

from mlmodels import services
from mlmodels.models import ModelVersion
from tests.knowledge.test_worker import celery_worker, worker_environment
from tests.mlmodels.conftest import TINY_TITANIC

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def own_queue():
    """Tasks go to the broker, as in production, on a queue of this test's own, so that a worker started by
    another test run sharing the broker folder cannot take them."""
    from config.celery import app

    queue = f"mlmodels-test-{os.getpid()}-{time.monotonic_ns()}"
    eager, routes = app.conf.task_always_eager, app.conf.task_routes
    app.conf.task_always_eager = False
    app.conf.task_routes = {"mlmodels.tasks.*": {"queue": queue}}
    _forget_routes(app)  # the router keeps the routes it was made with, maybe by an earlier test
    yield queue
    app.conf.task_always_eager, app.conf.task_routes = eager, routes
    _forget_routes(app)


def _forget_routes(app):
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)


def test_a_worker_process_trains_a_version_queued_by_the_web_process(own_queue):
    requested = services.model_version_request(kind="titanic", options=TINY_TITANIC)

    with celery_worker(worker_environment(), "--queues", own_queue):
        deadline = time.monotonic() + 120
        version = ModelVersion.objects.get(pk=requested.pk)
        while not version.is_finished and time.monotonic() < deadline:
            time.sleep(0.5)
            version.refresh_from_db()

    assert version.status == ModelVersion.Status.READY, version.error
    assert version.is_active and version.attempts == 1
    assert version.task_id and not version.task_id.startswith("process-")
    assert version.artifact.storage.exists(version.artifact.name)
