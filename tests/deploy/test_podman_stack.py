"""The podman route (scripts/podman_env.sh, container_smoke.sh, compose_smoke.sh, compose.podman.yml) checked
statically; the smoke scripts themselves build and run the image and the stack."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["podman_env.sh", "container_smoke.sh", "compose_smoke.sh"]


def test_the_override_replaces_only_the_database_and_redis_images_with_local_ones():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    override = yaml.safe_load((ROOT / "scripts" / "compose.podman.yml").read_text())

    assert set(override) == {"services"}
    assert set(override["services"]) == {"db", "redis"}
    for name, service in override["services"].items():
        assert set(service) == {"image"}, name
        assert service["image"].startswith("localhost/"), name
        assert name in compose["services"]


def test_the_compose_smoke_makes_the_images_the_override_names():
    override = yaml.safe_load((ROOT / "scripts" / "compose.podman.yml").read_text())
    smoke = (ROOT / "scripts" / "compose_smoke.sh").read_text()

    made = {f"localhost/kb-{name}" for name in re.search(r"for made in ([^;]+);", smoke).group(1).split()}

    assert {service["image"] for service in override["services"].values()} == made


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_name_no_host_but_loopback(script):
    # Mirrors and indexes are read from this machine's own settings at run time, never written down.
    text = (ROOT / "scripts" / script).read_text()

    hosts = set(re.findall(r"[a-z][a-z0-9+.-]*://(?:[^@/\s\"']*@)?([^/:\s\"'$]+)", text))

    assert hosts <= {"127.0.0.1", "localhost", "db", "redis"}, hosts


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    result = subprocess.run(
        ["bash", "-n", str(ROOT / "scripts" / script)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr


def test_podman_settings_stay_out_of_etc_containers():
    env = (ROOT / "scripts" / "podman_env.sh").read_text()

    for variable in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        assert f"export {variable}=$conf/" in env
    assert not re.search(r"(>|tee|cp|mv)[^\n]*/etc/containers", env)
    assert 'runtime = "runc"' in env and 'cgroup_manager = "cgroupfs"' in env
