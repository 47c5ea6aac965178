#!/usr/bin/env bash
# The virtualenv `make` uses: made with a supported Python, rebuilt when it was made by another Python or an install
# into it did not finish, then filled by scripts/install_python_deps.sh.
#
#   scripts/make_venv.sh --find-python          print the Python make should use (the first supported one on PATH)
#   scripts/make_venv.sh VENV PYTHON STAMP [--dev]
#
# Supported: CPython 3.11.2 (Debian 12's) up to 3.13; requirements/constraints.txt resolves alike on all of them.
set -euo pipefail

MIN=(3 11 2)
BELOW=(3 14)
version_ok='import sys; v = sys.version_info; sys.exit(0 if (3, 11, 2) <= v[:3] and v[:2] < (3, 14) and sys.implementation.name == "cpython" else 1)'

if [ "${1:-}" = "--find-python" ]; then
  for candidate in python3 python3.13 python3.12 python3.11; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c "$version_ok" 2>/dev/null; then
      echo "$path"
      exit 0
    fi
  done
  echo python3
  exit 0
fi

venv=$1
python=$2
stamp=$3
shift 3

fail() {
  printf '\nmake: %s\n\n' "$*" >&2
  exit 1
}

command -v "$python" >/dev/null 2>&1 || fail "no Python at '$python'. Install CPython ${MIN[0]}.${MIN[1]}.${MIN[2]} or newer, below ${BELOW[0]}.${BELOW[1]} (Debian and Ubuntu: apt install python3 python3-venv), or run make PYTHON=/path/to/python3."
found=$("$python" -c 'import sys; print(sys.implementation.name, ".".join(map(str, sys.version_info[:3])))' 2>/dev/null || echo "unknown")
"$python" -c "$version_ok" 2>/dev/null ||
  fail "$python is $found; this project needs CPython ${MIN[0]}.${MIN[1]}.${MIN[2]} or newer, below ${BELOW[0]}.${BELOW[1]} (Django 5.2 and the pinned wheels). Install one (Debian 12: apt install python3 python3-venv) and run make PYTHON=/path/to/python3.x."
"$python" -c 'import ensurepip, venv' 2>/dev/null ||
  fail "$python ($found) cannot make virtualenvs: its venv/ensurepip module is missing. On Debian and Ubuntu: apt install python3-venv (or python3.X-venv for the Python you use)."

# A virtualenv is reused only if it was made by this Python and its last install finished.
if [ -e "$venv" ]; then
  reason=""
  want=$("$python" -c 'import sys; print(sys.base_prefix, sys.version)')
  if [ ! -x "$venv/bin/python" ]; then
    reason="it has no working bin/python"
  elif [ -e "$venv/.install-incomplete" ]; then
    reason="the last install into it did not finish"
  elif ! have=$("$venv/bin/python" -c 'import sys; print(sys.base_prefix, sys.version)' 2>/dev/null); then
    reason="its Python does not start"
  elif [ "$have" != "$want" ]; then
    reason="it was made by another Python (${have%% *}, not ${want%% *})"
  fi
  if [ -n "$reason" ]; then
    echo "make: rebuilding $venv: $reason."
    rm -rf "$venv"
  fi
fi
if [ ! -e "$venv" ]; then
  "$python" -m venv "$venv"
fi
rm -f "$venv"/.installed-*
touch "$venv/.install-incomplete"
bash "$(dirname "$0")/install_python_deps.sh" --python "$venv/bin/python" "$@"
rm -f "$venv/.install-incomplete"
touch "$stamp"
