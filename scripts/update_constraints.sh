#!/usr/bin/env bash
# Regenerates requirements/constraints.txt: every transitive version of base.txt and dev.txt, resolved for the oldest
# Python the project supports (CPython 3.11.2, Debian 12's), then checked to resolve to the same set on 3.12 and 3.13.
# Pins already in the file are kept unless a requirement moved; delete a line to let it move. Lines for packages only
# torch.txt brings are kept below the resolved set. Needs network access to the package index; installs nothing.
#
#   usage: scripts/update_constraints.sh [PYTHON]     (make constraints)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

resolve() {  # resolve VERSION REPORT
  "$python" -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed --only-binary=:all: \
    --python-version "$1" --target "$work/target-$1" --report "$2" \
    -r requirements/dev.txt -c requirements/constraints.txt
}
for version in 3.11.2 3.12 3.13; do
  resolve "$version" "$work/$version.json"
done
"$python" - "$work" <<'PY'
import json, re, sys
from pathlib import Path

work = Path(sys.argv[1])
def resolved(version):
    report = json.loads((work / f"{version}.json").read_text())
    return {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"] for i in report["install"]}

oldest = resolved("3.11.2")
for version in ("3.12", "3.13"):
    if resolved(version) != oldest:
        sys.exit(f"the pins resolve differently on Python {version}; pin the packages that differ")
pins = {name for line in Path("requirements/constraints.txt").read_text().splitlines()
        if (name := re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()) and "==" in line and not line.startswith("#")}
optional = [line for line in Path("requirements/constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")
            and re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() not in oldest]
lines = ["# Every transitive version of base.txt and dev.txt, resolved for CPython 3.11.2 and the same on 3.12 and 3.13.",
         "# Regenerate: make constraints (scripts/update_constraints.sh)."]
lines += [f"{name}=={version}" for name, version in sorted(oldest.items())]
if optional:
    lines += ["# Only for requirements/torch.txt (optional)."] + optional
Path("requirements/constraints.txt").write_text("\n".join(lines) + "\n")
print(f"{len(oldest)} pins resolved alike on 3.11.2, 3.12 and 3.13; {len(optional)} kept for torch.txt")
PY
