"""Without DATABASE_URL the app starts an embedded PostgreSQL with pgvector under its data folder and uses it."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

PROBE = (
    "import json\n"
    "from django.db import connection\n"
    "from django.test import Client\n"
    "from django.test.utils import setup_test_environment\n"
    "setup_test_environment()\n"
    "cursor = connection.cursor()\n"
    "cursor.execute(\"SELECT extversion FROM pg_extension WHERE extname = 'vector'\")\n"
    "vector = cursor.fetchone()[0]\n"
    "cursor.execute(\"SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector\")\n"
    "distance = cursor.fetchone()[0]\n"
    "print(json.dumps({'engine': connection.settings_dict['ENGINE'], 'host': connection.get_connection_params()['host'],\n"
    "  'vector': vector, 'distance': distance, 'readyz': Client().get('/readyz').json()}))\n"
)


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    yield folder
    _stop(folder)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.base", DJANGO_DEBUG="1", KB_DATA_DIR=str(data_dir))
    return env


def _manage(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _probe(data_dir: Path) -> dict:
    return json.loads(_manage(data_dir, "shell", "--no-imports", "-c", PROBE).strip().splitlines()[-1])


def _stop(data_dir: Path) -> None:
    pgdata = str(data_dir / "pgdata")
    code = f"from pathlib import Path; from config.embedded_db import server; server.stop(Path({pgdata!r}))"
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(data_dir), check=False, capture_output=True
    )


def test_without_database_url_an_embedded_postgres_with_pgvector_is_started_and_used(data_dir):
    _manage(data_dir, "migrate", "--noinput")

    probe = _probe(data_dir)

    assert probe["engine"] == "config.embedded_db"
    assert probe["host"].startswith(str(data_dir)) or "python_PostgresServer" in probe["host"]
    assert probe["vector"]
    assert probe["distance"] == pytest.approx(1.0)
    assert probe["readyz"] == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    assert (data_dir / "pgdata" / "PG_VERSION").exists()


def test_the_embedded_database_recovers_from_a_killed_server_and_runs_twice(data_dir):
    _manage(data_dir, "migrate", "--noinput")
    pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)

    _manage(data_dir, "migrate", "--noinput")
    probe = _probe(data_dir)

    assert probe["readyz"]["status"] == "ok"


def test_a_half_created_data_folder_is_set_aside_and_started_afresh(data_dir):
    (data_dir / "pgdata").mkdir(parents=True)
    (data_dir / "pgdata" / "leftover").write_text("from an interrupted first start")

    _manage(data_dir, "migrate", "--noinput")

    assert _probe(data_dir)["readyz"]["status"] == "ok"
    assert list(data_dir.glob("pgdata.unusable-*/leftover"))


def test_the_command_stops_the_embedded_server_it_started_and_then_has_nothing_to_stop(data_dir):
    _manage(data_dir, "migrate", "--noinput")

    first = _manage(data_dir, "stop_embedded_database")
    second = _manage(data_dir, "stop_embedded_database")

    assert "Stopped the embedded database." in first
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    assert "Stopped" not in second
