"""What a new user does first: `make run`, the README's commands in the same folder, Ctrl-C (or `kill -INT` of
make). Each runs as the user runs it, in processes of its own."""

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
README_COMMAND = re.compile(r"\.venv/bin/python manage\.py ([^`#\n]+)")
# What a README command cannot be run as written here, and what stands in for it:
STAND_INS = {
    # minutes of training: only that the command starts and knows its options
    "train_mnist": lambda args: [*args, "--help"],
    # the README's folder is the whole PostgreSQL manual (may be absent): two pages of ours instead
    "ingest": lambda args: ["ingest", str(ROOT / "knowledge/demo/postgresql/mvcc-intro.html"), *args[2:]],
}
PLACEHOLDERS = {"<username>": "admin", "SLUG": "pg-manual", "NAME": "hashing-384"}


def _load_run_script():
    spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for match in README_COMMAND.finditer(text):
        args = shlex.split(match.group(1).strip())
        args = [PLACEHOLDERS.get(arg, arg) for arg in args]
        commands.append(STAND_INS.get(args[0], lambda a: a)(args))
    return commands


def _user_environment() -> dict[str, str]:
    """A shell after `make run`: none of the settings make run sets for itself, the same data folder (where its
    key is kept), and this test's database."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "KB_")) and k != "DATABASE_URL"
    }
    env["KB_DATA_DIR"] = str(settings.DATA_DIR)
    db = connection.settings_dict
    if "PGDATA" in db:
        env["KB_EMBEDDED_DB_NAME"] = db["NAME"]
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return env


@pytest.mark.django_db(transaction=True)
def test_every_readme_command_runs_as_written_in_the_folder_make_run_uses(monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)  # as make run starts, with nothing set
    UserFactory(username="admin", is_staff=True, is_superuser=True)
    key_file = Path(settings.DATA_DIR) / "secret-key.txt"
    made_key = not key_file.exists()
    _load_run_script()._ensure_secret_key(Path(settings.DATA_DIR))
    commands = readme_commands()

    try:
        results = {
            " ".join(args): subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=_user_environment(),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            for args in commands
        }
    finally:
        if made_key:
            key_file.unlink()

    assert {args[0] for args in commands} >= {
        "drf_create_token",
        "train_titanic",
        "train_mnist",
        "ingest",
        "reembed",
    }
    failed = {command: r.stderr[-1500:] for command, r in results.items() if r.returncode != 0}
    assert not failed
    assert all("DJANGO_SECRET_KEY" not in r.stderr for r in results.values())


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.mark.slow
def test_make_run_serves_then_stops_everything_on_kill_int_of_make(tmp_path):
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KB_", "CELERY_")) and k != "DATABASE_URL"
    }
    env.update(KB_DATA_DIR=str(tmp_path / "var"), KB_PORT=str(port), KB_WORKER_CONCURRENCY="1")
    log = (tmp_path / "make-run.log").open("w")
    make = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # As a terminal starts it, with SIGINT at its default: this test may itself run as a background job of a
        # script, which ignores SIGINT, and an ignored signal stays ignored in every program started after.
        preexec_fn=_as_from_a_terminal,  # noqa: PLW1509 - no thread of this test holds a lock meanwhile
    )
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and _get(f"http://127.0.0.1:{port}/readyz") != 200:
            assert make.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            time.sleep(1)
        assert _get(f"http://127.0.0.1:{port}/readyz") == 200, (tmp_path / "make-run.log").read_text()[-3000:]

        os.kill(make.pid, signal.SIGINT)  # make alone, not its process group
        make.wait(timeout=90)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        log.close()

    output = (tmp_path / "make-run.log").read_text()
    assert "make was interrupted; stopping." in output
    assert _get(f"http://127.0.0.1:{port}/healthz", timeout=2) == 0  # nothing serves any more
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "var")], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout


def test_the_kept_key_is_made_for_its_owner_alone_and_refused_once_others_may_read_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    _load_run_script()._ensure_secret_key(tmp_path)
    key_file = tmp_path / "secret-key.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "KB_"))}
    env.update(KB_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings.base")
    probe = [
        sys.executable,
        "-c",
        "import django; django.setup(); from django.conf import settings; print(len(settings.SECRET_KEY))",
    ]

    made_private = key_file.stat().st_mode & 0o777 == 0o600
    private = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    key_file.chmod(0o644)
    shared = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True, check=False)

    assert made_private
    assert private.returncode == 0 and int(private.stdout) > 50
    assert shared.returncode != 0 and "may be read by others" in shared.stderr
