#!/usr/bin/env bash
# The README's commands on fresh machines: for Debian 12 (bookworm, its own Python 3.11.2) and Debian 13 (trixie,
# Python 3.13), a container with nothing but Debian's make, python3, python3-venv and ca-certificates, a copy of
# this repository (`git archive HEAD`, so a clean clone) and an unprivileged user runs
#   make install, make test-fast, the real-worker and embedded-default tests as .ci/run runs them, and `make run`
#   until /readyz answers 200 and a question about the demo is answered with citations,
# and prints per suite: Python, install time, venv size, whether torch is in the venv, test results and times, time
# until /readyz, and the answer's citations. Exits non-zero when any suite failed any step.
#
#   bash scripts/fresh_machine_check.sh [bookworm] [trixie]      (both by default; called by .ci/run)
#
# Nothing of the host goes in but its package-registry access settings, read-only, at run time (/etc/pip.conf,
# /etc/xdg/pip, the CA bundle: kb_pip_access_volumes of scripts/podman_env.sh). The container uses the host's
# network (to reach the package index); the tests still use no server of the host except the RabbitMQ of the
# real-worker step (KB_FRESH_AMQP_URL, empty to skip that step). The host's PostgreSQL and Redis are never named:
# without DATABASE_URL and CELERY_BROKER_URL the project runs on its embedded PostgreSQL and file broker.
#
# Environment:
#   KB_FRESH_LOGS      where each suite's logs go (default: $KB_CONTAINER_CACHE/fresh-logs/<suite>-<time>)
#   KB_FRESH_AMQP_URL  the real-worker step's broker (default amqp://guest:guest@127.0.0.1:5672//)
#   KB_FRESH_RUN_TIMEOUT  seconds `make run` gets to answer /readyz, and again to index the demo (default 1200)
#   KB_FRESH_STEP_TIMEOUT seconds each install or test step gets (default 3600)
# shellcheck disable=SC2016  # the single-quoted commands run in the container's shell, which expands them
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# shellcheck source=scripts/podman_env.sh
. scripts/podman_env.sh

AMQP_URL=${KB_FRESH_AMQP_URL-amqp://guest:guest@127.0.0.1:5672//}
RUN_TIMEOUT=${KB_FRESH_RUN_TIMEOUT:-1200}
STEP_TIMEOUT=${KB_FRESH_STEP_TIMEOUT:-3600}
QUESTION="How do I back up a database while it is in use?"
# What a user's stock Debian has and the README asks for; no compiler, no PostgreSQL, no other Python.
PACKAGES=(make python3 python3-venv ca-certificates)
HOME_IN_BOX=/home/kb
REPO_IN_BOX=$HOME_IN_BOX/kb
STAMP=$(date +%Y%m%d-%H%M%S)
# The container's PID 1: reaps orphans and notes signals (see check_suite).
PID1='
import os, signal, time
def note(signum, frame):
    with open("/pid1.log", "a") as log:
        log.write(time.strftime("%T") + " PID 1 got " + signal.Signals(signum).name + "\n")
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(number, note)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
'

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

containers=()
cleanup() {
  local c
  for c in "${containers[@]}"; do
    kb_podman rm --force --time 0 "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '[fresh %s] %s\n' "$suite" "$*"; }
now() { date +%s; }

declare -A RESULT

# box CMD: run CMD with bash as the container's user, in the repository copy, as a new user's shell would.
box() {
  kb_podman exec --user kb --workdir "$REPO_IN_BOX" --env HOME="$HOME_IN_BOX" --env LANG=C.UTF-8 \
    "$name" bash -c "$1"
}

# step LABEL LOG CMD: run CMD in the box, output to LOG; sets STEP_SECONDS; returns CMD's status.
step() {
  local label=$1 log=$2 command=$3 start rc=0
  say "$label ..."
  start=$(now)
  box "timeout --kill-after 30 $STEP_TIMEOUT bash -c $(printf %q "$command")" >"$log" 2>&1 || rc=$?
  STEP_SECONDS=$(($(now) - start))
  if [ "$(kb_podman inspect --format '{{.State.Status}}' "$name" 2>/dev/null)" != running ]; then
    say "$label: the container stopped under it: $(kb_podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$name" 2>&1)"
  fi
  if [ "$rc" -eq 0 ]; then
    say "$label: ok in ${STEP_SECONDS}s"
  else
    say "$label: FAILED (status $rc) after ${STEP_SECONDS}s; the end of $log:"
    tail -n 25 "$log" | sed 's/^/    /'
  fi
  return "$rc"
}

# The pytest summary line ("N passed, M skipped ... in Xs"), or the last line of the log.
pytest_summary() {
  grep -E '^=* ?[0-9]+ (passed|failed|error)|^=* ?(no tests ran|[0-9]+ (deselected|skipped))' "$1" | tail -n 1 \
    | sed -E 's/^=+ //; s/ =+$//' || tail -n 1 "$1"
}

# Why an install failed, in a few lines: the resolver's and the Makefile's own words.
install_cause() {
  grep -E 'ResolutionImpossible|Requires-Python|requires a different Python|is required|No matching distribution|Could not find a version|ERROR:|Error:|error:' \
    "$1" | awk '!seen[$0]++' | cut -c 1-240 | head -n 12
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

http_status() {
  python3 - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        print(response.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print(0)
EOF
}

# demo_progress URL TOKEN: "READY TOTAL FAILED", counts of the documents the token's user may read.
demo_progress() {
  python3 - "$1" "$2" <<'EOF'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
statuses = []
page = f"{url}/api/documents/?page_size=200"
while page:
    request = urllib.request.Request(page, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    statuses += [document["status"] for document in body["results"]]
    page = body.get("next")
print(statuses.count("READY"), len(statuses), statuses.count("FAILED"))
EOF
}

# ask URL TOKEN QUESTION: POST /api/chat/ask over the demo; prints the answer and its citations, fails without any.
ask() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys, urllib.request
url, token, question = sys.argv[1:4]
request = urllib.request.Request(
    f"{url}/api/chat/ask",
    data=json.dumps({"question": question, "collections": ["postgresql-demo"]}).encode(),
    headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=300) as response:
    message = json.load(response)["message"]
print(f"    Q: {question}")
print(f"    A ({message['answer_mode']}, {message['outcome']}): {' '.join(message['text'].split())[:400]}")
cited = [c for c in message["citations"] if c["cited"]]
for citation in cited:
    title, section = citation["title"], citation["section"]
    where = section if section.startswith(title) else " / ".join(part for part in (title, section) if part)
    print(f"    [{citation['number']}] {where}")
sys.exit(0 if cited else "the answer cites no source")
EOF
}

check_suite() {
  local suite=$1 image logs port url token start deadline status progress ready total broken rc=0 failed=()
  logs=${KB_FRESH_LOGS:-$KB_CONTAINER_CACHE/fresh-logs}/$suite-$STAMP
  mkdir -p "$logs"
  name=kb-fresh-$suite-$$
  say "logs in $logs"

  image=$(kb_apt_image "$suite" "localhost/kb-fresh:$suite" "${PACKAGES[@]}") || {
    RESULT[$suite]="FAILED: could not make the image from localhost/kb-debian:$suite"
    return 1
  }
  containers+=("$name")
  # A clean clone's files (git archive HEAD), owned by the user; not a mount of the host's checkout. (Called in an
  # `||` list, this function runs without errexit: each failure is handled where it happens.)
  # PID 1 reaps orphans, as a machine's init does: a killed PostgreSQL left as a zombie would still hold its socket
  # lock (PostgreSQL sees its PID alive), and the embedded database's recovery test would fail for that alone. Like an
  # init it outlives the signals a process may send it, noting them; the container is removed with SIGKILL. (A bash
  # loop as PID 1 died seconds after some long steps ended; this Python one did not.)
  if ! kb_podman run --detach --pull=never --name "$name" --network host "${KB_PIP_VOLUMES[@]}" "$image" \
    python3 -c "$PID1" >/dev/null \
    || ! kb_podman exec "$name" useradd --create-home --home-dir "$HOME_IN_BOX" --shell /bin/bash kb \
    || ! git -C "$ROOT" archive --format=tar --prefix=kb/ HEAD \
    | kb_podman exec --interactive --user kb --workdir "$HOME_IN_BOX" "$name" tar -xf -; then
    RESULT[$suite]="FAILED: could not start the container with a copy of the repository"
    return 1
  fi

  RESULT[$suite.python]="Debian's $(box 'python3 --version')"
  say "${RESULT[$suite.python]}; $(box 'make --version | head -n 1')"

  # 1. Install, as `make run` and `make test` would do first.
  if ! step "make install" "$logs/install.log" 'make install'; then
    RESULT[$suite.install]="FAILED after ${STEP_SECONDS}s"
    RESULT[$suite.cause]=$(install_cause "$logs/install.log")
    say "why:"
    printf '%s\n' "${RESULT[$suite.cause]}" | sed 's/^/    /'
    RESULT[$suite]=FAILED
    return 1
  fi
  RESULT[$suite.install]="${STEP_SECONDS}s"
  RESULT[$suite.python]="$(box '.venv/bin/python -c "import sys; print(sys.version.split()[0], sys.base_prefix)"') (the venv's)"
  RESULT[$suite.venv]=$(box 'du -sh .venv | cut -f1')
  RESULT[$suite.torch]=$(box '.venv/bin/python - <<EOF
from importlib import metadata
try:
    print("torch " + metadata.version("torch") + " installed")
except metadata.PackageNotFoundError:
    print("no torch")
nvidia = sorted({d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].startswith("nvidia")})
if nvidia:
    print(f"(and {len(nvidia)} nvidia packages)")
EOF' | tr '\n' ' ')
  say "venv ${RESULT[$suite.venv]}, ${RESULT[$suite.torch]}"

  # 2. The fast suite, as the README's `make test-fast`.
  step "make test-fast" "$logs/test-fast.log" 'make test-fast' || failed+=("make test-fast")
  RESULT[$suite.test_fast]="$(pytest_summary "$logs/test-fast.log") (${STEP_SECONDS}s)"

  # 3. The slow tests .ci/run runs apart: a real worker on RabbitMQ, then the embedded default (no DATABASE_URL, no
  #    broker server) with a real worker on the file broker.
  if [ -n "$AMQP_URL" ]; then
    step "real worker on RabbitMQ" "$logs/worker-amqp.log" \
      "CELERY_BROKER_URL='$AMQP_URL' .venv/bin/python -m pytest -q -p no:cacheprovider tests/knowledge/test_worker.py -k web_process" \
      || failed+=("real worker on RabbitMQ")
    RESULT[$suite.worker_amqp]="$(pytest_summary "$logs/worker-amqp.log") (${STEP_SECONDS}s)"
  else
    RESULT[$suite.worker_amqp]="skipped (KB_FRESH_AMQP_URL empty)"
  fi
  step "embedded default" "$logs/embedded-default.log" \
    'env -u DATABASE_URL -u CELERY_BROKER_URL KB_DATA_DIR="$(mktemp -d)" .venv/bin/python -m pytest -q -p no:cacheprovider tests/config/test_embedded_default.py tests/config/test_health.py tests/knowledge/test_worker.py' \
    || failed+=("embedded default")
  RESULT[$suite.embedded]="$(pytest_summary "$logs/embedded-default.log") (${STEP_SECONDS}s)"

  # 4. `make run` in the background, on a free port of the shared network, until /readyz answers and the demo is
  #    indexed; then a question through the API with a token made as the README says. Training the NumPy models
  #    on start (MLMODELS_ENSURE_ON_RUN) is left out: it would take the shared cores for an hour, and the suite
  #    covers it.
  port=$(free_port)
  url=http://127.0.0.1:$port
  say "make run on $url ..."
  start=$(now)
  kb_podman exec --detach --user kb --workdir "$REPO_IN_BOX" --env HOME="$HOME_IN_BOX" --env LANG=C.UTF-8 \
    --env KB_PORT="$port" --env MLMODELS_ENSURE_ON_RUN=0 "$name" \
    bash -c 'echo $$ > make-run.pid; exec make run > make-run.log 2>&1' >/dev/null
  deadline=$((start + RUN_TIMEOUT))
  status=0
  while [ "$(now)" -lt "$deadline" ]; do
    status=$(http_status "$url/readyz")
    [ "$status" = 200 ] && break
    box 'kill -0 "$(cat make-run.pid)" 2>/dev/null' || break
    sleep 5
  done
  kb_podman cp "$name:$REPO_IN_BOX/make-run.log" "$logs/make-run.log" >/dev/null 2>&1 || true
  if [ "$status" != 200 ]; then
    say "make run: /readyz never answered 200 (last: $status) in $(($(now) - start))s; the end of make-run.log:"
    tail -n 30 "$logs/make-run.log" | sed 's/^/    /'
    RESULT[$suite.readyz]="FAILED (last status $status)"
    failed+=("make run")
  else
    RESULT[$suite.readyz]="$(($(now) - start))s"
    say "make run: /readyz 200 after ${RESULT[$suite.readyz]}"
    # The README's way to a token for the admin `make run` made.
    token=$(box '.venv/bin/python manage.py drf_create_token admin' 2>>"$logs/make-run.log" | grep -oE '[0-9a-f]{40}' | head -n 1)
    [ -n "$token" ] || say "manage.py drf_create_token admin gave no token (see $logs/make-run.log)"
    progress="0 0 0"
    while [ -n "$token" ] && [ "$(now)" -lt $((start + 2 * RUN_TIMEOUT)) ]; do
      progress=$(demo_progress "$url" "$token" 2>>"$logs/make-run.log") || progress="0 0 0"
      read -r ready total broken <<<"$progress"
      # Every document READY or FAILED (asking then shows what a user would see).
      [ "$total" -gt 0 ] && [ $((ready + broken)) -eq "$total" ] && break
      sleep 10
    done
    read -r ready total broken <<<"$progress"
    RESULT[$suite.demo]="$ready of $total documents READY, $broken FAILED, $(($(now) - start))s after make run started"
    say "demo documents: ${RESULT[$suite.demo]}"
    if ask "$url" "$token" "$QUESTION" >"$logs/answer.txt" 2>&1; then
      RESULT[$suite.answer]=$(cat "$logs/answer.txt")
    else
      RESULT[$suite.answer]="FAILED: $(tail -n 8 "$logs/answer.txt")"
      failed+=("the question")
    fi
    printf '%s\n' "${RESULT[$suite.answer]}"
  fi
  # Stopped as the README says a user may (`kill -INT` of make); the container goes anyway.
  box 'kill -INT "$(cat make-run.pid)" 2>/dev/null; for _ in $(seq 60); do kill -0 "$(cat make-run.pid)" 2>/dev/null || exit 0; sleep 1; done; exit 1' \
    || say "make run did not stop within 60 s of SIGINT"
  kb_podman cp "$name:$REPO_IN_BOX/make-run.log" "$logs/make-run.log" >/dev/null 2>&1 || true
  if kb_podman exec "$name" test -s /pid1.log 2>/dev/null; then
    say "something sent the container's PID 1 signals: $(kb_podman exec "$name" cat /pid1.log | tr '\n' ' ')"
  fi

  if [ ${#failed[@]} -gt 0 ]; then
    RESULT[$suite]="FAILED: $(IFS=,; echo "${failed[*]}")"
    rc=1
  else
    RESULT[$suite]=passed
  fi
  return "$rc"
}

kb_podman_install
kb_pip_access_volumes
overall=0
for suite in "${suites[@]}"; do
  check_suite "$suite" || overall=1
  kb_podman rm --force --time 0 "$name" >/dev/null 2>&1 || true
done

printf '\n=== Fresh machines ===\n'
for suite in "${suites[@]}"; do
  printf '%s: %s\n' "$suite" "${RESULT[$suite]:-not run}"
  printf '  Python            %s\n' "${RESULT[$suite.python]:-?}"
  printf '  make install      %s\n' "${RESULT[$suite.install]:-?}"
  if [ -n "${RESULT[$suite.cause]:-}" ]; then
    printf '%s\n' "${RESULT[$suite.cause]}" | sed 's/^/                    /'
  fi
  [ -n "${RESULT[$suite.venv]:-}" ] || continue
  printf '  venv              %s, %s\n' "${RESULT[$suite.venv]}" "${RESULT[$suite.torch]}"
  printf '  make test-fast    %s\n' "${RESULT[$suite.test_fast]:-?}"
  printf '  worker, RabbitMQ  %s\n' "${RESULT[$suite.worker_amqp]:-?}"
  printf '  embedded default  %s\n' "${RESULT[$suite.embedded]:-?}"
  printf '  make run /readyz  %s\n' "${RESULT[$suite.readyz]:-?}"
  printf '  demo indexed      %s\n' "${RESULT[$suite.demo]:-?}"
  if [ -n "${RESULT[$suite.answer]:-}" ]; then
    printf '%s\n' "${RESULT[$suite.answer]}"
  fi
done
exit "$overall"
