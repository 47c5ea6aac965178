"""scripts/make_venv.sh, the virtualenv `make` uses: a supported Python or a message saying what to install, and a
.venv rebuilt when another Python made it or an install into it did not finish. The install step itself is replaced
by a stub that records its arguments (or fails on demand), so these tests make real virtualenvs without pip."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OTHER_PYTHON = Path(
    "/usr/bin/python3"
)  # Debian's own, beside the Python running the tests (if it is another)


@pytest.fixture
def tree(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(ROOT / "scripts" / "make_venv.sh", scripts)
    (scripts / "install_python_deps.sh").write_text(
        '#!/usr/bin/env bash\necho "install $*" >> "$(dirname "$0")/../installs.log"\n'
        '[ ! -e "$(dirname "$0")/../fail" ] || { echo "pip: network is down" >&2; exit 1; }\n'
    )
    return tmp_path


def make_venv(tree, python, *args):
    return subprocess.run(
        [
            "bash",
            str(tree / "scripts" / "make_venv.sh"),
            str(tree / ".venv"),
            str(python),
            str(tree / ".venv" / ".installed-1"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fake_python(tree, version):
    """An interpreter that says it is CPython `version` and fails the version check, as an old one does."""
    fake = tree / f"python{version}"
    fake.write_text(
        f'#!/usr/bin/env bash\ncase "$2" in *implementation.name,*) echo "cpython {version}";; *) exit 1;; esac\n'
    )
    fake.chmod(0o755)
    return fake


def test_a_python_below_the_minimum_is_named_with_what_to_do(tree):
    result = make_venv(tree, fake_python(tree, "3.11.1"))

    assert result.returncode != 0
    assert "is cpython 3.11.1; this project needs CPython 3.11.2 or newer, below 3.14" in result.stderr
    assert "make PYTHON=/path/to/python3.x" in result.stderr
    assert not (tree / ".venv").exists()


def test_a_missing_python_is_named(tree):
    result = make_venv(tree, tree / "no-such-python")

    assert result.returncode != 0 and "no Python at" in result.stderr and "python3-venv" in result.stderr


def test_a_failed_install_is_not_reused_but_rebuilt(tree):
    (tree / "fail").touch()
    failed = make_venv(tree, sys.executable, "--dev")
    assert failed.returncode != 0 and "network is down" in failed.stderr
    assert (tree / ".venv" / ".install-incomplete").exists()
    assert not (tree / ".venv" / ".installed-1").exists()

    (tree / "fail").unlink()
    again = make_venv(tree, sys.executable, "--dev")

    assert again.returncode == 0, again.stderr
    assert "rebuilding" in again.stdout and "did not finish" in again.stdout
    assert (tree / ".venv" / ".installed-1").exists() and not (
        tree / ".venv" / ".install-incomplete"
    ).exists()
    assert (tree / "installs.log").read_text().count(
        f"--python {tree / '.venv' / 'bin' / 'python'} --dev"
    ) == 2


def test_a_finished_venv_of_the_same_python_is_kept(tree):
    assert make_venv(tree, sys.executable).returncode == 0
    marker = tree / ".venv" / "kept"
    marker.touch()

    again = make_venv(tree, sys.executable)

    assert again.returncode == 0 and "rebuilding" not in again.stdout and marker.exists()


def test_a_venv_made_by_another_python_is_rebuilt(tree):
    other = tree / ".venv" / "bin"
    other.mkdir(parents=True)
    (other / "python").write_text('#!/usr/bin/env bash\necho "/opt/another-python 3.12.1 (main)"\n')
    (other / "python").chmod(0o755)
    (tree / ".venv" / ".installed-1").touch()

    again = make_venv(tree, sys.executable)

    assert again.returncode == 0, again.stderr
    assert "made by another Python (/opt/another-python" in again.stdout
    made_by = subprocess.run(
        [str(tree / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert made_by == sys.base_prefix


def test_make_finds_a_supported_python():
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make_venv.sh"), "--find-python"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    version = subprocess.run(
        [
            found,
            "-c",
            "import sys; print(sys.version_info[:3] >= (3, 11, 2) and sys.version_info[:2] < (3, 14))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == "True"
