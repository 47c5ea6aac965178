"""`manage.py stop_embedded_database`, which `make run` calls on its way out: only the embedded server is stopped."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_a_database_server_of_database_url_is_left_alone():
    out = StringIO()

    call_command("stop_embedded_database", stdout=out)

    assert out.getvalue() == ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_make_run_and_clean_data_stop_the_database_with_the_command_not_code_in_a_string():
    run = (ROOT / "scripts" / "run.py").read_text()
    makefile = (ROOT / "Makefile").read_text()

    assert '"manage.py"), "stop_embedded_database"]' in run
    assert '"shell"' not in run
    assert "manage.py stop_embedded_database" in makefile
