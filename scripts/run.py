"""`make run`: migrate, make sure an admin exists, load the demo, then serve the site with workers beside it (one
per kind of queue: ingestion, large documents, training, the rest with beat).

Ctrl-C (or SIGTERM) stops the web server, then the workers (letting their current tasks finish or be re-queued),
then the embedded database when this script's settings use it. Running it again is safe: every step is
idempotent, and a data folder left by a killed run is recovered by the embedded database's start-up.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = os.environ.get("KB_HOST", "127.0.0.1")
PORT = os.environ.get("KB_PORT", "8000")
STOP_TIMEOUT_SECONDS = 20


def main() -> int:
    # Watched from the start: make stops catching SIGINT once it got one, and the first run's setup takes minutes.
    parent = _ParentMake()
    env = _environment()
    os.environ.update(env)
    data_dir = Path(env["KB_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    _ensure_secret_key(data_dir)

    username, password, note = _admin_credentials(data_dir)
    setup = [
        lambda: _manage("migrate", "--noinput", env=env),
        lambda: _ensure_admin(username, password, env),
        lambda: _manage("load_demo", env=env),
        lambda: _manage("ensure_models", env=env, optional=True),
    ]
    for step in setup:
        step()
        if parent.was_interrupted():
            print("\nmake was interrupted; stopping.", flush=True)
            _stop_embedded_database(env)
            return 0

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        # A worker per queue (CELERY_TASK_QUEUES): uploads are indexed while a model trains or a re-embed runs.
        children.append(("worker", _start_worker(env, data_dir, "celery", concurrency="1", beat=True)))
        children.append(
            (
                "ingest worker",
                _start_worker(
                    env, data_dir, "ingest,ingest-retry", os.environ.get("KB_WORKER_CONCURRENCY", "2")
                ),
            )
        )
        children.append(
            ("large-document worker", _start_worker(env, data_dir, "ingest-large,ingest-large-retry", "1"))
        )
        children.append(("training worker", _start_worker(env, data_dir, "training", concurrency="1")))
        children.append(("web", _start_web(env)))
        if _wait_until_serving(children, parent):
            _banner(username, password, note)
        while not stopping:
            for name, process in children:
                if process.poll() is not None:
                    print(f"\n{name} exited with status {process.returncode}; stopping.", flush=True)
                    stopping = True
            if parent.was_interrupted():
                print("\nmake was interrupted; stopping.", flush=True)
                stopping = True
            time.sleep(0.5)
    finally:
        print("\nStopping…", flush=True)
        for name, process in reversed(children):
            _stop(name, process)
        _stop_embedded_database(env)
    return 0


class _ParentMake:
    """`kill -INT <pid of make>` reaches make alone: GNU make then waits for its recipe to end, assuming the
    terminal sent the same signal to it too, so nothing would stop. Make stops catching SIGINT once it got one
    (it resets the handler before waiting); seen in /proc, that is this script's cue to stop. Ctrl-C in a
    terminal reaches every process of the group and needs none of this; without /proc it does nothing."""

    def __init__(self) -> None:
        self.status = Path(f"/proc/{os.getppid()}/status")
        comm = Path(f"/proc/{os.getppid()}/comm")
        is_make = comm.is_file() and comm.read_text().strip() in {"make", "gmake"}
        self.watching = is_make and self._catches_sigint()

    def _catches_sigint(self) -> bool:
        try:
            fields = dict(line.split(":", 1) for line in self.status.read_text().splitlines() if ":" in line)
        except OSError:
            return False  # make itself is gone
        return bool(int(fields.get("SigCgt", "0").strip(), 16) & (1 << (signal.SIGINT - 1)))

    def was_interrupted(self) -> bool:
        return self.watching and not self._catches_sigint()


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("KB_DATA_DIR", str(ROOT / "var"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _manage(*args: str, env: dict[str, str], optional: bool = False) -> None:
    command = [PYTHON, str(ROOT / "manage.py"), *args]
    if optional:
        # Commands of features that may not be installed in this checkout are skipped, not fatal.
        known = subprocess.run(
            [PYTHON, str(ROOT / "manage.py"), "help", args[0]], check=False, env=env, capture_output=True
        )
        if known.returncode != 0:
            return
    subprocess.run(command, env=env, check=True, cwd=ROOT)


def _ensure_secret_key(data_dir: Path) -> None:
    """A key generated once and kept in the data folder, which the settings read when DJANGO_SECRET_KEY is not
    set: the site and every `manage.py` command run in this folder then share it. Created readable by its owner
    alone, in one step (no moment with wider permissions, no second writer)."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return
    try:
        descriptor = os.open(data_dir / "secret-key.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w") as stored:
        stored.write(secrets.token_urlsafe(50) + "\n")


def _admin_credentials(data_dir: Path) -> tuple[str, str, str]:
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
    if password:
        return username, password, "from DJANGO_SUPERUSER_PASSWORD"
    stored = data_dir / "admin-password.txt"
    if stored.exists():
        return (
            username,
            stored.read_text().strip(),
            f"kept in {stored.relative_to(ROOT) if stored.is_relative_to(ROOT) else stored}",
        )
    password = secrets.token_urlsafe(12)
    stored.write_text(password + "\n")
    stored.chmod(0o600)
    return (
        username,
        password,
        f"generated, kept in {stored.relative_to(ROOT) if stored.is_relative_to(ROOT) else stored}",
    )


def _ensure_admin(username: str, password: str, env: dict[str, str]) -> None:
    # The password travels in the environment, not on the command line where `ps` shows it.
    subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "ensure_admin", "--username", username],
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password},
        check=True,
        cwd=ROOT,
    )


def _start_worker(
    env: dict[str, str], data_dir: Path, queue: str, concurrency: str, *, beat: bool = False
) -> subprocess.Popen[bytes]:
    schedule = ["--beat", "--schedule", str(data_dir / "celerybeat-schedule")] if beat else []
    return subprocess.Popen(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--queues",
            queue,
            "--hostname",
            f"{queue.split(',', maxsplit=1)[0]}@%h",
            *schedule,
            "--loglevel",
            os.environ.get("KB_WORKER_LOGLEVEL", "INFO"),
            "--concurrency",
            concurrency,
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )


def _start_web(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), "runserver", f"{HOST}:{PORT}", "--noreload"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )


def _wait_until_serving(children: list[tuple[str, subprocess.Popen[bytes]]], parent: _ParentMake) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(process.poll() is not None for _, process in children) or parent.was_interrupted():
            return False
        try:
            with urllib.request.urlopen(f"http://{HOST}:{PORT}/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def _banner(username: str, password: str, note: str) -> None:
    url = f"http://{HOST}:{PORT}"
    print(
        "\n"
        f"  The knowledge base is running on {url}/\n"
        f"  Admin:  {url}/admin/   user {username!r}, password {password!r} ({note})\n"
        f"  APIs:   {url}/api/ (resources) and {url}/api/docs (actions)\n"
        f"  Health: {url}/readyz\n"
        "  Ctrl-C stops the web server, the workers and the embedded database.\n",
        flush=True,
    )


def _stop(name: str, process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # To the main process only: Celery's warm shutdown lets the running tasks finish (or re-queues them).
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in {STOP_TIMEOUT_SECONDS} s; killing it.", flush=True)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _stop_embedded_database(env: dict[str, str]) -> None:
    if env.get("DATABASE_URL"):
        return
    subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "stop_embedded_database"], env=env, cwd=ROOT, check=False
    )


if __name__ == "__main__":
    sys.exit(main())
