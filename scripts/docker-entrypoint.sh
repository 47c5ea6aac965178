#!/usr/bin/env bash
# Container entrypoint. Roles: web (default), worker, beat, migrate; anything else is run as given.
#   DJANGO_MIGRATE_ON_START=1   web runs `migrate` before serving (off by default: migrate once, not per replica)
#   DJANGO_SUPERUSER_USERNAME/PASSWORD   web creates that admin account if it does not exist
#   KB_LOAD_DEMO=1              web loads the demo collection (idempotent)
#   WEB_CONCURRENCY, WORKER_CONCURRENCY, PORT; KNOWLEDGE_TORCH_THREADS (default: cores / processes of the role)
set -euo pipefail

# Without DJANGO_SECRET_KEY, one is generated once into the shared data volume, so that a fresh `docker compose up`
# works and every container of the stack signs with the same key.
if [ -z "${DJANGO_SECRET_KEY:-}" ] && [ -z "${DJANGO_SECRET_KEY_FILE:-}" ]; then
  export DJANGO_SECRET_KEY_FILE="${KB_DATA_DIR:-/data}/secret_key"
  if [ ! -s "$DJANGO_SECRET_KEY_FILE" ]; then
    (umask 077 && set -o noclobber && python -c 'import secrets; print(secrets.token_urlsafe(50))' >"$DJANGO_SECRET_KEY_FILE") 2>/dev/null || true
  fi
fi

# Each process gets its share of the cores for the embedding model (ONNX Runtime or torch), unless
# KNOWLEDGE_TORCH_THREADS is set: two web workers on two cores each running two threads would fight over them.
torch_threads_for() {
  local processes=$1 threads
  threads=$(( $(nproc) / (processes > 0 ? processes : 1) ))
  echo $(( threads > 0 ? threads : 1 ))
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
    exec celery -A config worker --loglevel "${WORKER_LOGLEVEL:-INFO}" \
      --concurrency "${WORKER_CONCURRENCY:-2}" --hostname "worker@%h"
    ;;
  beat)
    exec celery -A config beat --loglevel INFO --schedule "${KB_DATA_DIR:-/data}/celerybeat-schedule"
    ;;
  migrate)
    exec python manage.py migrate --noinput
    ;;
  *)
    exec "$@"
    ;;
esac
