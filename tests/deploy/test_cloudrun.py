"""The Cloud Run definitions (deploy/cloudrun/) against what the image really runs: the roles its entrypoint takes,
the port it serves on, its user, the variables the settings and the entrypoint read, and the health URLs."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.urls import resolve

from config import health

ROOT = Path(__file__).resolve().parents[2]
WEB = yaml.safe_load((ROOT / "deploy" / "cloudrun" / "web.yaml").read_text())
WORKER = yaml.safe_load((ROOT / "deploy" / "cloudrun" / "worker.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENTRYPOINT = (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
# Cloud Run sets these itself and refuses a revision that sets them.
RESERVED_BY_CLOUD_RUN = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|DATABASE_URL")


def dockerfile_instructions(keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [keyword]]


def runtime_stage_env() -> dict[str, str]:
    """ENV of the image's last stage, the one that runs."""
    last_stage = re.sub(r"\\\n\s*", " ", DOCKERFILE).rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split() if "=" in pair)
    return env


def entrypoint_roles() -> set[str]:
    """The roles `scripts/docker-entrypoint.sh` handles itself (its catch-all runs any other command as given)."""
    case = ENTRYPOINT[ENTRYPOINT.index('case "$role" in') : ENTRYPOINT.index("esac")]
    return set(re.findall(r"^\s+([a-z][a-z-]*)\)$", case, re.MULTILINE))


def entrypoint_branch(role: str) -> str:
    case = ENTRYPOINT[ENTRYPOINT.index('case "$role" in') : ENTRYPOINT.index("esac")]
    return case.split(f"\n  {role})\n", 1)[1].split(";;", 1)[0]


def variables_the_settings_read() -> set[str]:
    sources = "\n".join(path.read_text() for path in (ROOT / "config" / "settings").glob("*.py"))
    return set(re.findall(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", sources))


def variables_the_entrypoint_reads() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", ENTRYPOINT))


def revision(resource: dict) -> dict:
    return resource["spec"]["template"]


def container(resource: dict) -> dict:
    (only,) = revision(resource)["spec"]["containers"]
    return only


def env_of(resource: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container(resource).get("env", [])}


def plain_env(resource: dict) -> dict[str, str]:
    return {name: item["value"] for name, item in env_of(resource).items() if "value" in item}


def settings_with(environment: dict[str, str], tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    """`manage.py <command>` as the image would run it: its ENV, then the definition's values, with stand-ins for
    the secrets (nothing here connects to a database or broker)."""
    env = {
        **{key: value for key, value in runtime_stage_env().items() if key != "PATH"},
        "PATH": os.environ["PATH"],
        "KB_DATA_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://knowledge:stand-in@%2Fcloudsql%2FPROJECT%3AREGION%3Akb-db/knowledge",
        **environment,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("resource", "role"), [(WEB, "web"), (WORKER, "worker")], ids=["web", "worker"])
def test_each_definition_runs_a_role_the_image_entrypoint_takes(resource, role):
    spec = container(resource)

    assert spec["args"] == [role]
    assert role in entrypoint_roles()
    # `command` would replace the entrypoint, and with it the role dispatch and the secret-key handling.
    assert "command" not in spec
    assert dockerfile_instructions("ENTRYPOINT") == ['["/app/scripts/docker-entrypoint.sh"]']


def test_web_listens_on_the_port_the_image_exposes_and_serves_on():
    port = container(WEB)["ports"][0]["containerPort"]

    assert dockerfile_instructions("EXPOSE") == [str(port)]
    assert runtime_stage_env()["PORT"] == str(port)
    # Cloud Run sets PORT to the container port; the server binds every interface on it, not loopback alone.
    assert '--bind "0.0.0.0:${PORT:-8000}"' in entrypoint_branch("web")
    for probe in ("startupProbe", "livenessProbe"):
        assert container(WEB)[probe]["httpGet"]["port"] == port


@pytest.mark.parametrize(
    ("probe", "view"),
    [("startupProbe", health.readyz), ("livenessProbe", health.healthz)],
)
def test_web_probes_are_the_health_views_and_are_not_redirected_to_https(probe, view):
    path = container(WEB)[probe]["httpGet"]["path"]

    assert resolve(path).func is view
    # Probes arrive over plain HTTP; a redirect would count as success whatever the view would have said.
    assert any(re.search(pattern, path.lstrip("/")) for pattern in settings.SECURE_REDIRECT_EXEMPT)


def test_web_is_public_with_a_warm_instance_and_room_for_the_probes_to_wait():
    annotations = revision(WEB)["metadata"]["annotations"]
    startup = container(WEB)["startupProbe"]

    assert WEB["kind"] == "Service" and WEB["apiVersion"] == "serving.knative.dev/v1"
    assert WEB["metadata"]["annotations"]["run.googleapis.com/ingress"] == "all"
    assert int(annotations["autoscaling.knative.dev/minScale"]) >= 1
    # Cloud Run stops waiting for a start after 240 s.
    assert 60 <= startup["periodSeconds"] * startup["failureThreshold"] <= 240


def test_worker_is_a_worker_pool_with_always_allocated_cpu_and_no_endpoint():
    annotations = WORKER["metadata"]["annotations"]

    # The worker role listens on nothing, so it cannot be a Cloud Run service, which must answer on PORT.
    assert "--bind" not in entrypoint_branch("worker")
    assert WORKER["kind"] == "WorkerPool" and WORKER["apiVersion"] == "run.googleapis.com/v1"
    assert annotations["run.googleapis.com/scalingMode"] == "manual"
    assert int(annotations["run.googleapis.com/manualInstanceCount"]) >= 1
    assert "ports" not in container(WORKER)
    assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(container(WORKER))


@pytest.mark.parametrize("resource", [WEB, WORKER], ids=["web", "worker"])
def test_every_variable_set_is_one_the_settings_or_the_entrypoint_read(resource):
    known = variables_the_settings_read() | variables_the_entrypoint_reads()

    names = set(env_of(resource))

    assert {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY"} <= names
    assert names <= known, f"read by nothing: {sorted(names - known)}"
    assert not names & RESERVED_BY_CLOUD_RUN


@pytest.mark.parametrize("resource", [WEB, WORKER], ids=["web", "worker"])
def test_secrets_come_from_secret_manager_never_from_the_file(resource):
    for name, item in env_of(resource).items():
        if SECRET_LOOKING.search(name):
            assert "value" not in item, name
            assert item["valueFrom"]["secretKeyRef"]["key"] == "latest", name


def test_web_and_worker_share_the_image_secrets_database_broker_and_files():
    def shared(resource: dict) -> dict:
        annotations = revision(resource)["metadata"]["annotations"]
        return {
            "image": container(resource)["image"],
            "secrets": {
                name: item["valueFrom"] for name, item in env_of(resource).items() if "valueFrom" in item
            },
            "broker": plain_env(resource)["CELERY_BROKER_URL"],
            "cloudsql": annotations["run.googleapis.com/cloudsql-instances"],
            "network": annotations["run.googleapis.com/network-interfaces"],
            "volumes": revision(resource)["spec"]["volumes"],
            "mounts": container(resource)["volumeMounts"],
            "service_account": revision(resource)["spec"]["serviceAccountName"],
        }

    web, worker = shared(WEB), shared(WORKER)

    assert web == worker
    assert [mount["mountPath"] for mount in web["mounts"]] == [runtime_stage_env()["DJANGO_MEDIA_ROOT"]]


def test_the_image_runs_unprivileged_and_the_definitions_do_not_change_that():
    user = dockerfile_instructions("USER")[-1].split(":")[0]

    assert user.isdigit() and int(user) != 0
    for resource in (WEB, WORKER):
        assert "securityContext" not in container(resource)


def test_web_settings_pass_the_deploy_checks(tmp_path):
    result = settings_with(plain_env(WEB), tmp_path, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("resource", [WEB, WORKER], ids=["web", "worker"])
def test_the_definitions_reach_the_database_and_broker_servers_not_the_embedded_ones(resource, tmp_path):
    script = (
        "import json; from django.conf import settings; print(json.dumps({"
        "'engine': settings.DATABASES['default']['ENGINE'], 'broker': settings.CELERY_BROKER_URL, "
        "'debug': settings.DEBUG}))"
    )

    result = settings_with(plain_env(resource), tmp_path, "shell", "-c", script)

    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "engine": "django.db.backends.postgresql",
        "broker": plain_env(resource)["CELERY_BROKER_URL"],
        "debug": False,
    }
