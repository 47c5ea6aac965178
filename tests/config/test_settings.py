import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def _env(**changes: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "KB_"))}
    env.update(changes)
    return env


def test_every_environment_variable_read_by_the_settings_is_documented_in_env_example():
    settings_source = (ROOT / "config" / "settings" / "base.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    )

    assert read, "no variables found; the pattern is broken"
    assert read - documented == set()


def test_the_secret_key_has_no_default_outside_debug():
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings.base"],
        cwd=ROOT,
        env=_env(DJANGO_DEBUG="0"),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_the_deploy_check_is_clean_with_production_settings():
    env = _env(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="p" * 20 + "-production-like-secret-key-for-the-deploy-check-0123456789",
        DJANGO_ALLOWED_HOSTS="kb.example.org",
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        DJANGO_SECURE_HSTS_PRELOAD="1",
        DJANGO_SESSION_COOKIE_SECURE="1",
        DJANGO_CSRF_COOKIE_SECURE="1",
        DJANGO_SETTINGS_MODULE="config.settings.base",
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)


def _database_settings(module: str, **changes: str) -> dict:
    code = (
        f"import importlib, json, os; importlib.import_module({module!r}); "
        "from django.conf import settings; import django; django.setup(); "
        "db = settings.DATABASES['default']; "
        "print(json.dumps({'pool': db.get('OPTIONS', {}).get('pool'), 'age': db['CONN_MAX_AGE']}))"
    )
    env = _env(DJANGO_DEBUG="1", DATABASE_URL="postgres://kb@127.0.0.1:5432/kb", **changes)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_asgi_web_server_takes_connections_from_a_bounded_pool():
    # Under ASGI, views run on any free thread: per-thread persistent connections would pile up.
    assert _database_settings("config.asgi") == {
        "pool": {"min_size": 1, "max_size": 8, "timeout": 10.0},
        "age": 0,
    }
    assert _database_settings("config.asgi", DJANGO_DB_POOL_MAX_SIZE="20")["pool"]["max_size"] == 20


def test_workers_and_commands_keep_a_persistent_connection_per_thread():
    assert _database_settings("config.settings.base") == {"pool": None, "age": 60}
