"""`manage.py stop_embedded_database`, which `make run` calls on its way out: only the embedded server is stopped."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection

from core.management.commands import stop_embedded_database as command_module

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


class _Connection:
    """A connection of a server named by DATABASE_URL: its backend has no server of its own to stop."""


class _EmbeddedConnection:
    def __init__(self) -> None:
        self.stopped = 0

    def stop_server(self) -> bool:
        self.stopped += 1
        return True


def test_a_database_server_of_database_url_is_left_alone(monkeypatch):
    # The command is given stand-in connections: the suite's own may be the embedded server (a machine without
    # DATABASE_URL), which a real call would stop under the tests that follow.
    monkeypatch.setattr(command_module, "connections", {DEFAULT_DB_ALIAS: _Connection()})
    out = StringIO()

    call_command("stop_embedded_database", stdout=out)

    assert out.getvalue() == ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_the_embedded_server_is_stopped_and_said_so(monkeypatch):
    embedded = _EmbeddedConnection()
    monkeypatch.setattr(command_module, "connections", {DEFAULT_DB_ALIAS: embedded})
    out = StringIO()

    call_command("stop_embedded_database", stdout=out)

    assert embedded.stopped == 1
    assert out.getvalue().strip() == "Stopped the embedded database."


def test_make_run_and_clean_data_stop_the_database_with_the_command_not_code_in_a_string():
    run = (ROOT / "scripts" / "run.py").read_text()
    makefile = (ROOT / "Makefile").read_text()

    assert '"manage.py"), "stop_embedded_database"]' in run
    assert '"shell"' not in run
    assert "manage.py stop_embedded_database" in makefile
