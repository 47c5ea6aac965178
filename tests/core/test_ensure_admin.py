"""`manage.py ensure_admin`, which `make run` calls: the password comes from the environment only."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_the_admin_is_created_with_the_password_from_the_environment_and_kept_afterwards(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "first-password")
    call_command("ensure_admin", "--username", "boss")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "another-password")
    call_command("ensure_admin", "--username", "boss")

    user = get_user_model().objects.get(username="boss")
    assert user.is_staff and user.is_superuser and user.is_active
    assert user.check_password("first-password")  # an existing password is never replaced


def test_without_a_password_in_the_environment_nothing_is_created(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD"):
        call_command("ensure_admin", "--username", "boss")

    assert not get_user_model().objects.filter(username="boss").exists()


def test_make_run_passes_the_password_in_the_environment_not_on_the_command_line():
    from pathlib import Path

    run = (Path(__file__).resolve().parents[2] / "scripts" / "run.py").read_text()

    assert '"ensure_admin", "--username", username]' in run
    assert '"DJANGO_SUPERUSER_PASSWORD": password' in run
    assert "set_password" not in run
