#!/usr/bin/env bash
# Container entrypoint. Roles: web (default), worker, beat, migrate; healthcheck (the image's HEALTHCHECK: checks
# whichever role the container runs); anything else is run as given.
#   DJANGO_MIGRATE_ON_START=1   web runs `migrate` before serving (off by default: migrate once, not per replica)
#   DJANGO_SUPERUSER_USERNAME/PASSWORD   web creates that admin account if it does not exist
#   KB_LOAD_DEMO=1              web loads the demo collection (idempotent)
#   MLMODELS_ENSURE_ON_RUN=0    web does not queue the trainings of models without an active version (as `make run`)
#   WEB_CONCURRENCY, WORKER_CONCURRENCY, PORT; KNOWLEDGE_TORCH_THREADS (default: cores / processes of the role)
set -euo pipefail

# Without DJANGO_SECRET_KEY, one is generated once into the shared data volume, so that a fresh `docker compose up`
# works and every container of the stack signs with the same key. It is the file the settings read by themselves
# (KB_DATA_DIR/secret-key.txt, owner-only), so `docker exec ... python manage.py ...` uses it too; a volume from an
# earlier image keeps the key it has in secret_key.
if [ -z "${DJANGO_SECRET_KEY:-}" ] && [ -z "${DJANGO_SECRET_KEY_FILE:-}" ]; then
  key_file="${KB_DATA_DIR:-/data}/secret-key.txt"
  if [ ! -s "$key_file" ]; then
    (umask 077 && set -o noclobber && if [ -s "${key_file%/*}/secret_key" ]; then cat "${key_file%/*}/secret_key"; else
      python -c 'import secrets; print(secrets.token_urlsafe(50))'; fi >"$key_file") 2>/dev/null || true
  fi
fi

# Each process gets its share of the cores for the embedding model (ONNX Runtime or torch), unless
# KNOWLEDGE_TORCH_THREADS is set: two web workers on two cores each running two threads would fight over them.
torch_threads_for() {
  local processes=$1 threads
  threads=$(( $(nproc) / (processes > 0 ? processes : 1) ))
  echo $(( threads > 0 ? threads : 1 ))
}

# The role this container serves, from its processes' command lines (PID 1 unless run with an init): the image has
# one HEALTHCHECK for every role, and a check run by `docker exec`/`podman healthcheck run` does not inherit what
# PID 1 was started with (podman does not even set HOSTNAME for it).
serving_role() {
  local cmdline process
  for cmdline in /proc/[0-9]*/cmdline; do
    process=$(tr '\0' ' ' <"$cmdline" 2>/dev/null) || continue
    if [[ $process == *"gunicorn config.asgi:application"* ]]; then echo web; return; fi
    if [[ $process == *"celery -A config worker"* ]]; then echo worker; return; fi
    if [[ $process == *"celery -A config beat"* ]]; then echo beat; return; fi
  done
  # None yet: the entrypoint is still migrating or loading the demo; or the container runs a one-off command.
  if [[ $(tr '\0' ' ' </proc/1/cmdline) == *docker-entrypoint.sh* ]]; then echo starting; else echo other; fi
}

healthcheck() {
  local role
  role=$(serving_role)
  if [ "$role" = web ]; then
    exec python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"
  elif [ "$role" = worker ]; then
    # The worker's node name is worker@<hostname> (see below): ping this container's worker only.
    local answer
    answer=$(celery -A config inspect ping --timeout 5 --destination "worker@$(cat /proc/sys/kernel/hostname)" 2>&1)
    [[ $answer == *pong* ]] || { echo "$answer" >&2; return 1; }
  elif [ "$role" = beat ]; then
    [ -n "$(find "${KB_DATA_DIR:-/data}" -maxdepth 1 -name 'celerybeat-schedule*' -print -quit)" ]
  elif [ "$role" = starting ]; then
    echo "healthcheck: the role's process has not started yet" >&2
    return 1
  fi
}

role=${1:-web}
case "$role" in
  web)
    if [ "${DJANGO_MIGRATE_ON_START:-0}" = "1" ]; then
      python manage.py migrate --noinput
    fi
    if [ -n "${DJANGO_SUPERUSER_PASSWORD:-}" ]; then
      python manage.py createsuperuser --noinput --username "${DJANGO_SUPERUSER_USERNAME:-admin}" \
        --email "${DJANGO_SUPERUSER_EMAIL:-admin@localhost}" 2>/dev/null || true
    fi
    if [ "${KB_LOAD_DEMO:-0}" = "1" ]; then
      python manage.py load_demo
    fi
    # Like `make run`: a model without an active version gets its training queued for the workers. Not fatal: the
    # database may not be migrated yet when another replica or a job migrates it.
    python manage.py ensure_models || echo "entrypoint: ensure_models failed; the models stay as they are" >&2
    export KNOWLEDGE_TORCH_THREADS="${KNOWLEDGE_TORCH_THREADS:-$(torch_threads_for "${WEB_CONCURRENCY:-2}")}"
    # uvicorn workers: ASGI, so streamed answers (SSE) do not hold a worker thread each.
    exec gunicorn config.asgi:application \
      --worker-class uvicorn_worker.UvicornWorker \
      --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" \
      --timeout "${WEB_TIMEOUT:-120}" \
      --graceful-timeout 30 \
      --access-logfile - \
      --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}"
    ;;
  worker)
    export KNOWLEDGE_TORCH_THREADS="${KNOWLEDGE_TORCH_THREADS:-$(torch_threads_for "${WORKER_CONCURRENCY:-2}")}"
    # WORKER_QUEUES: the queues this worker serves (comma-separated: celery, ingest, ingest-retry, ingest-large,
    # ingest-large-retry, training; default all). A worker of ingest serves ingest-retry too, and one of
    # ingest-large ingest-large-retry: tasks sent again wait there.
    exec celery -A config worker --loglevel "${WORKER_LOGLEVEL:-INFO}" \
      --concurrency "${WORKER_CONCURRENCY:-2}" --hostname "worker@%h" ${WORKER_QUEUES:+--queues "$WORKER_QUEUES"}
    ;;
  beat)
    exec celery -A config beat --loglevel INFO --schedule "${KB_DATA_DIR:-/data}/celerybeat-schedule"
    ;;
  migrate)
    exec python manage.py migrate --noinput
    ;;
  healthcheck)
    healthcheck
    ;;
  *)
    exec "$@"
    ;;
esac
