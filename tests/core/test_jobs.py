from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from core import jobs
from knowledge.tasks import ingest_document, reembed_collection
from mlmodels.tasks import train_model_version

NOW = timezone.now()


def _job(**fields: object) -> SimpleNamespace:
    defaults = {"pk": 1, "status": "PENDING", "error": "old", "progress": 0.5, "attempts": 0, "task_id": ""}
    return SimpleNamespace(**{**defaults, "heartbeat_at": None, **fields})


def _claim(job: SimpleNamespace, owner: str = "task-b") -> jobs.Claim:
    return jobs.job_claim(job, running="RUNNING", owner=owner, stale_seconds=60, max_attempts=3, now=NOW)


def test_a_waiting_job_is_taken_reset_and_counted():
    job = _job()

    claim = _claim(job)

    assert claim is jobs.Claim.TAKEN
    assert (job.status, job.error, job.progress, job.attempts, job.task_id, job.heartbeat_at) == (
        "RUNNING",
        "",
        0.0,
        1,
        "task-b",
        NOW,
    )


def test_a_job_another_live_worker_runs_is_left_to_it():
    job = _job(status="RUNNING", task_id="task-a", attempts=1, heartbeat_at=NOW - timedelta(seconds=10))

    claim = _claim(job)

    assert claim is jobs.Claim.HELD
    assert (job.task_id, job.attempts) == ("task-a", 1)


def test_a_job_whose_worker_went_silent_is_taken_over():
    job = _job(status="RUNNING", task_id="task-a", attempts=1, heartbeat_at=NOW - timedelta(seconds=61))

    assert _claim(job) is jobs.Claim.TAKEN
    assert (job.task_id, job.attempts) == ("task-b", 2)


def test_a_redelivered_task_takes_its_own_job_again():
    job = _job(status="RUNNING", task_id="task-b", attempts=1, heartbeat_at=NOW)

    assert _claim(job) is jobs.Claim.TAKEN
    assert job.attempts == 2


def test_no_owner_never_counts_as_the_same_owner():
    job = _job(status="RUNNING", task_id="", attempts=1, heartbeat_at=NOW)

    assert _claim(job, owner="") is jobs.Claim.HELD


def test_a_job_that_has_had_its_attempts_is_left_for_its_app_to_fail():
    job = _job(status="RUNNING", task_id="task-a", attempts=3, heartbeat_at=NOW - timedelta(hours=1))

    claim = _claim(job)

    assert claim is jobs.Claim.EXHAUSTED
    assert (job.status, job.attempts, job.task_id) == ("RUNNING", 3, "task-a")


def test_every_job_task_retries_transient_errors_only_and_survives_a_dead_worker():
    for task in (ingest_document, reembed_collection, train_model_version):
        assert task.acks_late and task.reject_on_worker_lost
        assert task.autoretry_for == jobs.TRANSIENT_ERRORS
        assert task.retry_jitter
    assert (ingest_document.max_retries, reembed_collection.max_retries, train_model_version.max_retries) == (
        8,
        8,
        3,
    )
    assert (ingest_document.retry_backoff, train_model_version.retry_backoff) == (5, 30)


def test_a_job_task_reads_its_time_limits_from_the_settings_when_a_worker_asks(settings):
    settings.KNOWLEDGE_INGEST_SOFT_TIME_LIMIT, settings.KNOWLEDGE_INGEST_TIME_LIMIT = 5, 7
    settings.MLMODELS_TRAIN_SOFT_TIME_LIMIT, settings.MLMODELS_TRAIN_TIME_LIMIT = 11, 13

    limits = [(task.soft_time_limit, task.time_limit) for task in (ingest_document, train_model_version)]

    assert limits == [(5, 7), (11, 13)]
    assert (reembed_collection.soft_time_limit, reembed_collection.time_limit) == (6 * 3600, 6 * 3600 + 300)


def test_time_limits_are_both_seconds_or_both_settings():
    with pytest.raises(TypeError, match="both"):
        jobs.retrying_task(
            backoff=1,
            backoff_max=2,
            max_retries=1,
            soft_time_limit="KNOWLEDGE_INGEST_SOFT_TIME_LIMIT",
            time_limit=60,
        )
