"""What the apps' background jobs share: the errors worth a retry, the options of a retrying task, and the claim and
stalled-job steps over the job fields a row carries (`status`, `progress`, `attempts`, `task_id`, `heartbeat_at`,
`error`: a knowledge Document, an mlmodels ModelVersion).

A job row is run by one worker at a time. The worker claims it under a row lock (`job_claim`), records a heartbeat
while it works, and ends it in a final status. A row whose heartbeat stops (the worker was killed, ran out of memory
or lost the database) is stalled (`jobs_stalled`); the apps' sweeps hand it on (`jobs_recover_stalled`). What counts
as already done, how a claimed row is reset and how a row that has had its attempts fails stay with each app."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from celery import Task
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

logger = logging.getLogger(__name__)

# Errors of the database connection are worth a retry of the task; anything else about a job is final.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

# What sending a task raises when the broker cannot be reached (kombu wraps the transports' own errors).
BROKER_ERRORS: tuple[type[Exception], ...] = (BrokerOperationalError, OSError)

# The fields `job_claim` sets when it takes a row, for `save(update_fields=...)`.
CLAIM_FIELDS = ("status", "error", "progress", "attempts", "task_id", "heartbeat_at")


class JobTask(Task):
    """The base of every job's task (`retrying_task`).

    Its retries go to the queue `retry_queues` names for the queue its message came from (the message's routing
    key: the queue's name), unless the retry names a queue itself. Its time limits may be settings, named by
    `soft_time_limit_setting` and `time_limit_setting` and read when they are asked for (a worker asks as it starts
    consuming), not when the tasks' module is imported: the module imports without configured settings, and the
    value in force is the deployment's (or a test's). Limits given as numbers are class attributes of the task,
    which take the place of these properties."""

    retry_queues: dict[str, str] = {}  # set for each task by retrying_task
    soft_time_limit_setting = ""
    time_limit_setting = ""

    @property
    def soft_time_limit(self) -> float | None:
        name = self.soft_time_limit_setting
        return float(getattr(settings, name)) if name else None

    @property
    def time_limit(self) -> float | None:
        name = self.time_limit_setting
        return float(getattr(settings, name)) if name else None

    def retry(self, *args: Any, **options: Any) -> Any:
        came_from = (self.request.delivery_info or {}).get("routing_key")
        if options.get("queue") is None and came_from in self.retry_queues:
            options["queue"] = self.retry_queues[came_from]
        return super().retry(*args, **options)


def retrying_task(
    *,
    backoff: int,
    backoff_max: int,
    max_retries: int,
    soft_time_limit: float | str,
    time_limit: float | str,
    retry_queues: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The options of a task that runs a job: `@shared_task(**retrying_task(...))`.

    The message is acknowledged only once the task has run, and given back when its worker dies, so that another
    worker runs it (the claim tells a redelivery from a duplicate); TRANSIENT_ERRORS are retried with exponential
    backoff from `backoff` seconds up to `backoff_max`, with jitter, at most `max_retries` times; a run is told to
    stop after `soft_time_limit` seconds and killed after `time_limit`, each a number of seconds or the name of the
    setting that holds it (read when asked for, `JobTask`). A retry goes to `retry_queues[the queue the task came
    from]` when that names one (so that it waits neither behind everything queued since nor for another kind of
    worker), else where the task came from. The task is bound (`self.request.id` is the owner the claim records)."""
    options: dict[str, Any] = {"base": JobTask, "retry_queues": dict(retry_queues or {})}
    if isinstance(soft_time_limit, str) and isinstance(time_limit, str):
        options |= {"soft_time_limit_setting": soft_time_limit, "time_limit_setting": time_limit}
    elif isinstance(soft_time_limit, str) or isinstance(time_limit, str):
        raise TypeError("Both time limits are numbers of seconds, or both are names of settings.")
    else:
        options |= {"soft_time_limit": soft_time_limit, "time_limit": time_limit}
    return options | {
        "bind": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "autoretry_for": TRANSIENT_ERRORS,
        "retry_backoff": backoff,
        "retry_backoff_max": backoff_max,
        "retry_jitter": True,
        "max_retries": max_retries,
    }


class Job(Protocol):
    """A row with the job fields."""

    pk: Any
    status: Any
    error: Any
    progress: Any
    attempts: Any
    task_id: Any
    heartbeat_at: Any


JobRow = TypeVar("JobRow", bound=Model)


class Claim(enum.Enum):
    TAKEN = "taken"  # the row is now this owner's: running, one more attempt, a fresh heartbeat
    HELD = "held"  # a live worker (another owner whose heartbeat is fresh) holds it: nothing to do
    EXHAUSTED = "exhausted"  # it has had its attempts: the app fails it with its own reason


def job_claim(
    job: Job, *, running: str, owner: str, stale_seconds: float, max_attempts: int, now: datetime
) -> Claim:
    """Take `job` for `owner` (a task id) unless a live worker holds it or it has had `max_attempts`; the caller
    holds the row's lock, has already left alone what its app counts as done, and saves the row (CLAIM_FIELDS plus
    its own reset) when TAKEN. A row running under the same owner is a redelivery of the same task: taken again."""
    if job.status == running:
        same_owner = bool(owner) and job.task_id == owner
        stale = now - timedelta(seconds=stale_seconds)
        if not same_owner and job.heartbeat_at is not None and job.heartbeat_at > stale:
            return Claim.HELD
    if job.attempts >= max_attempts:
        return Claim.EXHAUSTED
    job.status = running
    job.error = ""
    job.progress = 0.0
    job.attempts += 1
    job.task_id = owner
    job.heartbeat_at = now
    return Claim.TAKEN


def jobs_stalled(*, running: str, stale_seconds: float, now: datetime) -> Q:
    """The running jobs whose heartbeat is older than `stale_seconds`: their worker stopped reporting."""
    return Q(status=running, heartbeat_at__lt=now - timedelta(seconds=stale_seconds))


def jobs_recover_stalled(
    queryset: QuerySet[JobRow],
    *,
    running: str,
    stale_seconds: float,
    now: datetime,
    recover: Callable[[JobRow], None],
) -> list[int]:
    """Call `recover` (the app's rule: queue it again, or fail it) on each stalled job of `queryset`, each in its own
    transaction with the row locked and checked again; a row another process has locked (a worker claiming it) is
    skipped, not waited for. Returns the ids of the rows recovered."""
    stalled = jobs_stalled(running=running, stale_seconds=stale_seconds, now=now)
    recovered: list[int] = []
    for job_id in queryset.filter(stalled).values_list("pk", flat=True):
        with transaction.atomic():
            job = queryset.select_for_update(skip_locked=True).filter(stalled, pk=job_id).first()
            if job is None:
                continue
            recover(job)
            recovered.append(job.pk)
    return recovered


class Heartbeat:
    """Touches `heartbeat_at` of the job `rows` select (the row, while it runs under this owner) every `interval`
    seconds from a thread of its own, for as long as the `with` block runs, whatever the block is doing: one long
    parse, an epoch of a large network, a wait for a lock. Only a worker that died stops beating, so the sweep
    tells a slow job from a dead one."""

    def __init__(self, rows: QuerySet[Any], *, interval: float, name: str) -> None:
        self.rows = rows
        self.interval = interval
        self.name = name
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat {name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                try:
                    self.rows.update(heartbeat_at=timezone.now())
                except TRANSIENT_ERRORS:
                    logger.warning("heartbeat of %s failed; trying again", self.name)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's own connections only
