#!/usr/bin/env bash
# Installs the Python dependencies into the active (or given) Python: the CPU build of torch first, then the
# pinned requirements under the pinned constraints. The same script is run by `make`, CI and the Dockerfile.
#
#   usage: scripts/install_python_deps.sh [--dev] [--python PATH]
#   TORCH_INDEX_URL: optional package index that serves PyTorch's CPU-only wheels (keeps images small)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
python=python
extra=base
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) extra=dev ;;
    --python) python=$2; shift ;;
    *) echo "install_python_deps: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

pip=("$python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade "pip>=24"
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" install --quiet "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" install --quiet "torch==2.13.0"
  fi
fi
"${pip[@]}" install --quiet -r "$here/requirements/$extra.txt" -c "$here/requirements/constraints.txt"
