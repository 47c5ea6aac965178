#!/usr/bin/env bash
# Builds the project's image with podman and runs it for real: a web and a worker container from it, on host
# networking, against this machine's PostgreSQL (a database of the run's own) and Redis (a db index of its own).
# Each check prints one line, "check: ok ..." or "check: FAIL ..."; any failure fails the script. Everything the
# run started (containers, volume, database, the Redis db's keys) is removed at the end, whatever happened.
#
#   usage: scripts/container_smoke.sh [--from-git REF] [--no-cache] [--keep] [--build-only]
#     --from-git REF   build from `git archive REF` instead of the working tree
#     --no-cache       build every layer again (the Debian base images are kept)
#     --keep           leave the containers, volume and database for a look (their names are printed)
#     --build-only     build the image (and check it has no torch), run nothing (scripts/compose_smoke.sh uses it)
#
#   KB_CONTAINER_CACHE      podman's folder, images and layer cache (scripts/podman_env.sh); a new, empty folder is
#                           a new machine's run
#   KB_SMOKE_POSTGRES       the server, as a URL without a database (default postgres://postgres@127.0.0.1:5432)
#   KB_SMOKE_REDIS          the Redis database (default redis://127.0.0.1:6379/9); it is flushed at the end
#   KB_IMAGE                the image's name (default localhost/knowledge-platform:latest)
#
# The Python layer is Debian 12's own python3 (3.11.2), made from a debootstrapped bookworm: no registry is needed.
# pip reaches the package index with this machine's own settings (/etc/pip.conf, /etc/xdg/pip, the CA bundle),
# mounted read-only while the image builds and never copied into it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

from_git="" no_cache=() keep=0 build_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --from-git) from_git=$2; shift ;;
    --no-cache) no_cache=(--no-cache) ;;
    --keep) keep=1 ;;
    --build-only) build_only=1 ;;
    *) echo "container_smoke: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=scripts/podman_env.sh
. scripts/podman_env.sh

image=${KB_IMAGE:-localhost/knowledge-platform:latest}
python_image=localhost/kb-python:bookworm
postgres=${KB_SMOKE_POSTGRES:-postgres://postgres@127.0.0.1:5432}
redis=${KB_SMOKE_REDIS:-redis://127.0.0.1:6379/9}
run_id=$$
database=kb_smoke_$run_id
volume=kb-smoke-data-$run_id
web=kb-smoke-web-$run_id
worker=kb-smoke-worker-$run_id
web_stop_seconds=40   # gunicorn's --graceful-timeout is 30 s
worker_stop_seconds=60
started=$(date +%s)
failures=0
ran=0
timings=()

say() { printf 'container_smoke: %s\n' "$*"; }
psql_admin() { psql "$postgres/postgres" -v ON_ERROR_STOP=1 -qAt "$@"; }
redis_db() { echo "${redis##*/}"; }

cleanup() {
  local rc=$?
  set +e
  if [ "$failures" -gt 0 ] || [ "$rc" -ne 0 ]; then
    for name in "$web" "$worker"; do
      if kb_podman container exists "$name"; then
        echo "--- last lines of $name's log ---"
        kb_podman logs --tail 40 "$name" 2>&1
      fi
    done
  fi
  [ "$ran" = 1 ] || { [ -n "${context_dir:-}" ] && rm -rf "$context_dir"; return; }
  if [ "$keep" = 1 ]; then
    say "kept: containers $web $worker, volume $volume, database $database"
    return
  fi
  kb_podman rm --force --time 0 "$web" "$worker" >/dev/null 2>&1
  kb_podman volume rm --force "$volume" >/dev/null 2>&1
  psql_admin -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1
  if command -v redis-cli >/dev/null; then
    redis-cli -u "${redis%/*}" -n "$(redis_db)" flushdb >/dev/null 2>&1
  fi
  [ -n "${context_dir:-}" ] && rm -rf "$context_dir"
  rm -f "${body_file:-}"
}
trap cleanup EXIT

# JSON fields out of a response, with the host's python3: json_get FILE EXPRESSION (on `d`, the parsed body).
json_get() { python3 -c "import json, sys; from datetime import datetime; d = json.load(open(sys.argv[1])); print($2)" "$1"; }

http() { # http METHOD PATH [JSON]: the status on stdout, the body in $body_file
  local method=$1 path=$2 data=${3:-}
  local args=(-sS -o "$body_file" -w '%{http_code}' -X "$method" --max-time 60
    -H "Authorization: Token ${token:-none}" -H 'Accept: application/json')
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data "$data")
  curl "${args[@]}" "http://127.0.0.1:$port$path" || true  # 000 when it cannot connect
}

wait_ready() { # wait_ready CONTAINER SECONDS: /readyz answering 200
  local name=$1 deadline=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ "$(kb_podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
      say "$name exited while starting"
      return 1
    fi
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
    sleep 1
  done
  return 1
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- What the run needs on this machine ------------------------------------------------------------------------------

# shellcheck disable=SC2119
kb_podman_install
for command in curl python3 psql; do
  command -v "$command" >/dev/null || { say "$command is needed"; exit 1; }
done
if [ "$build_only" = 0 ] && [ -z "$(psql_admin -c "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")" ]; then
  bash scripts/install_pgvector.sh
fi

# --- Images ----------------------------------------------------------------------------------------------------------

step=$(date +%s)
kb_base_image bookworm >/dev/null
# The Dockerfile runs `python`; python-is-python3 provides it, ca-certificates what python:3.11-slim has.
kb_apt_image bookworm "$python_image" python3 python3-venv python-is-python3 ca-certificates >/dev/null
timing "base images" "$(elapsed_since "$step")"

context=$repo
if [ -n "$from_git" ]; then
  context_dir=$(mktemp -d)
  git archive "$from_git" | tar -x -C "$context_dir"
  context=$context_dir
fi
previous=$(kb_podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
kb_pip_access_volumes
step=$(date +%s)
say "building $image from ${from_git:-the working tree}"
kb_podman build --format docker --network host --pull=never "${no_cache[@]}" "${KB_PIP_VOLUMES[@]}" \
  --build-arg "PYTHON_IMAGE=$python_image" --tag "$image" --file "$context/Dockerfile" "$context" \
  >"${KB_CONTAINER_CACHE}/build.log" 2>&1 || {
  tail -n 40 "${KB_CONTAINER_CACHE}/build.log"
  fail "the image builds (log: ${KB_CONTAINER_CACHE}/build.log)"
  exit 1
}
timing "image build" "$(elapsed_since "$step")"
current=$(kb_podman image inspect --format '{{.Id}}' "$image")
# The previous build's own layers, no longer tagged; the layer cache of unchanged steps stays.
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  kb_podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(kb_podman image inspect --format '{{.Size}}' "$image")
say "image size: $((size / 1000000)) MB"

if kb_podman run --rm --network none --health-cmd none "$image" python -c "import torch" >/dev/null 2>&1; then
  fail "torch is not in the image (it imports)"
else
  ok "torch is not in the image"
fi

if [ "$build_only" = 1 ]; then
  [ "$failures" -eq 0 ] || exit 1
  exit 0
fi

# --- Web and worker --------------------------------------------------------------------------------------------------

ran=1
psql_admin -c "CREATE DATABASE $database" >/dev/null
kb_podman volume create "$volume" >/dev/null
port=$(free_port)
body_file=$(mktemp)
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
app_env=(
  -e "DATABASE_URL=$postgres/$database" -e "CELERY_BROKER_URL=$redis"
  -e DJANGO_DEBUG=0 -e "DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost"
  # One epoch for the full digits model that ensure_models queues behind the quick-start one (3 epochs, always):
  # the check is that they train, not how well.
  -e MLMODELS_MNIST_DEFAULT_EPOCHS=1
)
start_web() {
  kb_podman run --detach --name "$web" --network host --volume "$volume:/data" "${app_env[@]}" \
    -e "PORT=$port" -e WEB_CONCURRENCY=2 -e DJANGO_MIGRATE_ON_START=1 -e KB_LOAD_DEMO=1 \
    -e DJANGO_SUPERUSER_USERNAME=smoke -e "DJANGO_SUPERUSER_PASSWORD=$password" "$image" web >/dev/null
}
start_worker() {
  kb_podman run --detach --name "$worker" --network host --uts private --hostname "$worker" \
    --volume "$volume:/data" "${app_env[@]}" -e WORKER_CONCURRENCY=2 "$image" worker >/dev/null
}

step=$(date +%s)
start_web
start_worker
if wait_ready "$web" 300; then
  timing "web ready after start" "$(elapsed_since "$step")"
  ok "GET /readyz answers 200: $(curl -s "http://127.0.0.1:$port/readyz")"
else
  fail "GET /readyz answers 200 within 300 s"
  exit 1
fi

for name in "$web" "$worker"; do
  # Without systemd podman runs no healthcheck by itself; the worker's may take a moment to answer pings.
  health=unhealthy
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    if out=$(kb_podman healthcheck run "$name" 2>&1); then health=healthy; break; fi
    sleep 3
  done
  if [ "$health" = healthy ]; then
    ok "$name: the image's HEALTHCHECK passes (podman healthcheck run; state $(kb_podman inspect --format '{{.State.Health.Status}}' "$name"))"
  else
    fail "$name: HEALTHCHECK: $out"
  fi
done

for name in "$web" "$worker"; do
  # Read on the host: no user namespace, so the uids are the same there.
  uids=$(for pid in $(kb_podman top "$name" hpid | tail -n +2); do
    awk '/^Uid:/ {print $2 "/" $3}' "/proc/$pid/status" 2>/dev/null
  done | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd ' ')
  if [[ "$uids" =~ ^10001/10001\ x[0-9]+$ ]]; then
    ok "$name: every process runs as uid 10001 ($uids)"
  else
    fail "$name: runs as uid 10001 (real/effective uids: $uids)"
  fi
done

token=$(kb_podman exec "$web" python manage.py drf_create_token smoke | awk '{print $3}')

demo_count=$(find knowledge/demo/postgresql -maxdepth 1 -name '*.html' | wc -l)
deadline=$(($(date +%s) + 900))
ready=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ "$(http GET '/api/documents/?collection=postgresql-demo&page_size=100')" = 200 ]; then
    ready=$(json_get "$body_file" "sum(1 for x in d['results'] if x['status'] == 'READY' and x['chunk_count'] > 0)")
    failed=$(json_get "$body_file" "sum(1 for x in d['results'] if x['status'] == 'FAILED')")
    if [ "$ready" -ge "$demo_count" ] || [ "$failed" -gt 0 ]; then break; fi
  fi
  sleep 3
done
chunks=$(json_get "$body_file" "sum(x['chunk_count'] for x in d['results'])" 2>/dev/null || echo 0)
if [ "$ready" -ge "$demo_count" ]; then
  timing "demo embedded after start" "$(elapsed_since "$step")"
  # The worker's own part: from the first document added to the last one indexed.
  timing "demo indexing by the worker" "$(json_get "$body_file" "round(max(datetime.fromisoformat(x['indexed_at']) for x in d['results']).timestamp() - min(datetime.fromisoformat(x['created_at']) for x in d['results']).timestamp())")"
  ok "the worker embedded the demo: $ready of $demo_count documents READY, $chunks chunks"
else
  fail "the worker embedded the demo: $ready of $demo_count documents READY"
fi

status=$(http POST /api/chat/ask '{"question": "How do I back up a database while it is in use?"}')
if [ "$status" = 200 ] &&
  [ "$(json_get "$body_file" "sum(1 for c in d['message']['citations'] if c['cited'])")" -gt 0 ]; then
  ok "POST /api/chat/ask with a token: answered, citing $(json_get "$body_file" \
    "', '.join(sorted({c['title'] for c in d['message']['citations'] if c['cited']}))")"
else
  fail "POST /api/chat/ask with a token: $status $(head -c 300 "$body_file")"
fi

# ensure_models (run by the web role, as by `make run`) queued the trainings; the titanic one takes seconds.
passenger='{"pclass": 3, "sex": "female", "age": 29, "sibsp": 0, "parch": 0, "fare": 7.25, "embarked": "S"}'
deadline=$(($(date +%s) + 300))
while status=$(http POST /api/ml/titanic/predict "$passenger") && [ "$status" = 503 ] &&
  [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 3
done
if [ "$status" = 200 ]; then
  ok "POST /api/ml/titanic/predict: $(json_get "$body_file" "d['label'] + ', probability %.2f' % d['probability']")"
else
  fail "POST /api/ml/titanic/predict: $status $(head -c 300 "$body_file")"
fi

# The production settings of the Makefile's deploy-check.
if deploy_check=$(kb_podman exec -e DJANGO_DEBUG=0 -e "DJANGO_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" \
  -e DJANGO_ALLOWED_HOSTS=kb.example.org -e DJANGO_SECURE_SSL_REDIRECT=1 -e DJANGO_SECURE_HSTS_SECONDS=31536000 \
  -e DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS=1 -e DJANGO_SECURE_HSTS_PRELOAD=1 -e DJANGO_SESSION_COOKIE_SECURE=1 \
  -e DJANGO_CSRF_COOKIE_SECURE=1 "$web" python manage.py check --deploy --fail-level WARNING 2>&1); then
  ok "manage.py check --deploy with production settings: $deploy_check"
else
  fail "manage.py check --deploy: $deploy_check"
fi

# The worker finishes the trainings ensure_models queued before it is stopped: a graceful stop waits for them.
deadline=$(($(date +%s) + 600))
while [ "$(http GET /api/ml/models)" = 200 ] &&
  [ "$(json_get "$body_file" "sum(1 for v in d['versions'] if v['status'] in ('PENDING', 'TRAINING'))")" -gt 0 ] &&
  [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 5
done
key_before=$(kb_podman exec "$web" sha256sum /data/secret-key.txt | cut -c1-16)

stop_gracefully() { # stop_gracefully CONTAINER GRACE LOG-LINE
  local name=$1 grace=$2 line=$3 begun took code
  begun=$(date +%s)
  kb_podman stop --time "$grace" "$name" >/dev/null
  took=$(elapsed_since "$begun")
  code=$(kb_podman inspect --format '{{.State.ExitCode}}' "$name")
  if [ "$code" = 0 ] && [ "$took" -lt "$grace" ] && kb_podman logs "$name" 2>&1 | grep -q "$line"; then
    ok "$name: SIGTERM stops it gracefully in ${took} s (grace ${grace} s, exit 0, log: \"$line\")"
  else
    fail "$name: SIGTERM: exit $code after ${took} s (grace ${grace} s), \"$line\" logged: $(kb_podman logs "$name" 2>&1 | grep -c "$line")"
  fi
}
stop_gracefully "$worker" "$worker_stop_seconds" "Warm shutdown"
stop_gracefully "$web" "$web_stop_seconds" "Shutting down: Master"

# --- A second start on the same volume and database --------------------------------------------------------------------

kb_podman rm "$web" "$worker" >/dev/null
step=$(date +%s)
start_web
start_worker
if wait_ready "$web" 300; then
  timing "web ready, second start" "$(elapsed_since "$step")"
  key_after=$(kb_podman exec "$web" sha256sum /data/secret-key.txt | cut -c1-16)
  demo_log=$(kb_podman logs "$web" 2>&1 | grep -m1 '^Demo collection' || true)
  status=$(http GET '/api/documents/?collection=postgresql-demo&page_size=100')
  kept=$(json_get "$body_file" "sum(1 for x in d['results'] if x['status'] == 'READY')" 2>/dev/null || echo 0)
  first=$(json_get "$body_file" "d['results'][0]['id']" 2>/dev/null || echo 0)
  download=$(http GET "/api/documents/$first/download/")
  if [ "$key_after" = "$key_before" ] && [ "$status" = 200 ] && [ "$kept" -ge "$demo_count" ] &&
    [ "$download" = 200 ] && [[ "$demo_log" == *"0 added, 0 updated"* ]]; then
    ok "a second start on the same volume keeps the data: the same secret key, the token, $kept documents READY, their files (download 200), \"$demo_log\""
  else
    fail "a second start keeps the data: key $key_before -> $key_after, documents $status/$kept, download $download, \"$demo_log\""
  fi
else
  fail "a second start on the same volume answers /readyz"
fi

timing "whole run" "$(elapsed_since "$started")"
printf '%s\n' "image: $image, $((size / 1000000)) MB" "${timings[@]}"
if [ "$failures" -gt 0 ]; then
  say "$failures check(s) failed"
  exit 1
fi
say "all checks passed"
