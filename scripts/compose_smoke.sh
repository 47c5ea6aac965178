#!/usr/bin/env bash
# The whole stack of docker-compose.yml, brought up by podman-compose on a bridge network with service-name DNS
# (netavark and aardvark-dns), with the db and redis images replaced (scripts/compose.podman.yml) by images made here
# from Debian packages: PostgreSQL 15 with pgvector built by scripts/install_pgvector.sh, and Redis 7. Checks that
# web reaches `db` and `redis` by name, that the worker consumes (the demo gets embedded), that beat runs, that
# every healthcheck passes and that `down -v` removes the stack; each check prints one line, any failure fails.
#
#   usage: scripts/compose_smoke.sh [--from-git REF | --no-build]
#     builds the project image first with scripts/container_smoke.sh --build-only (from the working tree, or REF);
#     --no-build uses the image as it is (right after container_smoke.sh built it)
#
# A bridge network adds iptables rules and a bridge to this machine and sets net.ipv4.ip_forward: the firewall
# ruleset (nft), the links and ip_forward are recorded first and restored at the end, and compared. So nothing else
# should change the firewall while it runs (podman runs on host networking, as the other scripts' are, do not).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
build=(--build-only)
case "${1:-}" in
  --from-git) build+=(--from-git "${2:?--from-git REF}") ;;
  --no-build) build=() ;;
  "") ;;
  *) echo "compose_smoke: unknown option $1" >&2; exit 2 ;;
esac

# shellcheck source=scripts/podman_env.sh
. scripts/podman_env.sh

project=kb-smoke-stack
network=${project}_default
started=$(date +%s)
failures=0
timings=()
state=$(mktemp -d)
# podman-compose 1.0.3 names containers <project>_<service>_1.
web=${project}_web_1
worker=${project}_worker_1
trainer=${project}_worker-training_1
large=${project}_worker-large_1
beat=${project}_beat_1

say() { printf 'compose_smoke: %s\n' "$*"; }
# log_shows_within SECONDS CONTAINER PATTERN: true once the container's log has a line matching PATTERN.
log_shows_within() {
  local deadline=$(($(date +%s) + $1))
  until kb_podman logs "$2" 2>&1 | grep -q "$3"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 5
  done
}
json_get() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"; }

# The machine's networking, to leave it as found.
network_state() { # network_state PREFIX
  $KB_SUDO nft list ruleset >"$state/$1.nft" 2>/dev/null
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$state/$1.links"
  sysctl -n net.ipv4.ip_forward >"$state/$1.ip_forward"
}

compose() {
  KB_PORT=$port DJANGO_SUPERUSER_PASSWORD=$password \
    kb_podman_compose -p "$project" -f "$state/docker-compose.yml" -f "$repo/scripts/compose.podman.yml" "$@"
}

restore_network() {
  local link
  [ -f "$state/before.nft" ] && [ ! -f "$state/restored.nft" ] || return 0
  network_state after
  kb_podman network exists "$network" && kb_podman network rm -f "$network" >/dev/null 2>&1
  if ! cmp -s "$state/before.nft" "$state/after.nft"; then
    $KB_SUDO nft flush ruleset && $KB_SUDO nft -f "$state/before.nft"
  fi
  for link in $(comm -13 "$state/before.links" "$state/after.links"); do
    $KB_SUDO ip link delete "$link" 2>/dev/null
  done
  $KB_SUDO sysctl -qw "net.ipv4.ip_forward=$(cat "$state/before.ip_forward")"
  network_state restored
  if cmp -s "$state/before.nft" "$state/restored.nft" && cmp -s "$state/before.links" "$state/restored.links" &&
    cmp -s "$state/before.ip_forward" "$state/restored.ip_forward"; then
    ok "the machine's networking is as found: firewall ruleset ($(wc -l <"$state/restored.nft") lines), links ($(paste -sd ' ' "$state/restored.links")), ip_forward=$(cat "$state/restored.ip_forward") (left after down: $(($(wc -l <"$state/after.nft") - $(wc -l <"$state/before.nft"))) more ruleset lines, links: $(comm -13 "$state/before.links" "$state/after.links" | paste -sd ' ' | grep . || echo none), ip_forward=$(cat "$state/after.ip_forward"))"
  else
    fail "the machine's networking is as found"
    diff "$state/before.nft" "$state/restored.nft"
    diff "$state/before.links" "$state/restored.links"
    diff "$state/before.ip_forward" "$state/restored.ip_forward"
  fi
}

remove_stack() {
  local id
  for id in $(kb_podman ps -aq --filter "label=io.podman.compose.project=$project"); do
    kb_podman rm -f "$id" >/dev/null 2>&1
  done
  for id in $(kb_podman volume ls -q --filter "label=io.podman.compose.project=$project"); do
    kb_podman volume rm -f "$id" >/dev/null 2>&1
  done
}

cleanup() {
  local rc=$?
  set +e
  if [ "$failures" -gt 0 ] || [ "$rc" -ne 0 ]; then
    for name in "$web" "$worker" "$large" "$trainer" "$beat"; do
      kb_podman container exists "$name" && { echo "--- last lines of $name's log ---"; kb_podman logs --tail 30 "$name" 2>&1; }
    done
  fi
  [ -f "$state/docker-compose.yml" ] && compose down -v -t 10 >/dev/null 2>&1
  remove_stack
  restore_network
  [ "$failures" -eq 0 ] || rc=1
  rm -rf "$state"
  exit "$rc"
}
trap cleanup EXIT

kb_podman_install --stack
command -v curl >/dev/null || { say "curl is needed"; exit 1; }

# --- Images: the project's (its layer cache makes this quick after container_smoke.sh), db and redis ---------------

if [ ${#build[@]} -gt 0 ]; then
  bash scripts/container_smoke.sh "${build[@]}" | grep -E '^(timing|check):' || { say "the image does not build"; exit 1; }
elif ! kb_podman image exists localhost/knowledge-platform:latest; then
  say "--no-build: there is no localhost/knowledge-platform:latest (scripts/container_smoke.sh builds it)"
  exit 1
fi

step=$(date +%s)
kb_base_image bookworm >/dev/null
context=$state/images
mkdir -p "$context"
cp scripts/install_pgvector.sh "$context/"
# What the pgvector/pgvector image does with POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB on an empty volume.
cat >"$context/postgres-entrypoint.sh" <<'EOF'
#!/bin/sh
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s' "$POSTGRES_PASSWORD" >/tmp/pwfile
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile -E UTF8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then createdb -U "$POSTGRES_USER" "$POSTGRES_DB"; fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialized $PGDATA"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
EOF
cat >"$context/postgres.Containerfile" <<'EOF'
FROM localhost/kb-debian:bookworm
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
COPY install_pgvector.sh /tmp/
RUN bash /tmp/install_pgvector.sh 15 \
    && DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq postgresql-server-dev-15 gcc make dpkg-dev >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get autoremove -y -qq >/dev/null \
    && rm -rf /var/lib/apt/lists/* /tmp/install_pgvector.sh \
    && mkdir -p /var/lib/postgresql/data && chown postgres:postgres /var/lib/postgresql/data
COPY --chmod=755 postgres-entrypoint.sh /usr/local/bin/
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
EOF
# Debian's redis-server with the official image's network defaults: no config file, and so protected mode would
# refuse the other containers.
cat >"$context/redis.Containerfile" <<'EOF'
FROM localhost/kb-debian:bookworm
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = redis-server ]; then shift; exec redis-server --protected-mode no \"$@\"; fi; exec \"$@\"", "--"]
CMD ["redis-server"]
EOF
for made in postgres:15 redis:7; do
  kb_podman build --quiet --format docker --network host --pull=never -t "localhost/kb-$made" \
    -f "$context/${made%%:*}.Containerfile" "$context" >"$state/build-${made%%:*}.log" 2>&1 || {
    tail -n 30 "$state/build-${made%%:*}.log"
    fail "localhost/kb-$made builds"
    exit 1
  }
done
timing "db and redis images" "$(elapsed_since "$step")"

# podman-compose 1.0.3 (Debian 12) reads env_file entries only as paths, not Compose's `{path, required}` form: the
# copy it reads names the run's own settings file instead of the optional .env (a local .env is not the stack's
# wiring). One epoch for the full digits model that ensure_models queues behind the quick-start one: the check is
# that the training worker consumes.
printf '%s\n' MLMODELS_MNIST_DEFAULT_EPOCHS=1 >"$state/smoke.env"
python3 - "$repo/docker-compose.yml" "$state/docker-compose.yml" "$state/smoke.env" <<'EOF'
import sys
import yaml

source, target, env_file = sys.argv[1:]
compose = yaml.safe_load(open(source))
for service in compose["services"].values():
    if "env_file" in service:
        service["env_file"] = [
            env_file if isinstance(entry, dict) and entry.get("required") is False else entry
            for entry in service["env_file"]
        ]
yaml.safe_dump(compose, open(target, "w"), sort_keys=False)
EOF

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
network_state before

# --- Up: db and redis first, healthy, then the rest (podman-compose 1.0.3 ignores depends_on's conditions) --------

healthy() { # healthy CONTAINER SECONDS
  local deadline=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kb_podman healthcheck run "$1" >/dev/null 2>&1 && return 0
    sleep 2
  done
  return 1
}

step=$(date +%s)
compose up -d --no-build db redis >"$state/up.log" 2>&1 || { cat "$state/up.log"; fail "compose up db redis"; exit 1; }
for name in db redis; do
  if healthy "${project}_${name}_1" 120; then ok "$name: healthy ($(kb_podman image inspect --format '{{.RepoTags}}' \
    "$(kb_podman inspect --format '{{.Image}}' "${project}_${name}_1")"))"; else fail "$name: healthy"; fi
done
compose up -d --no-build >>"$state/up.log" 2>&1 || { cat "$state/up.log"; fail "compose up"; exit 1; }

deadline=$(($(date +%s) + 300))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/readyz")" = 200 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 2
done
body=$(curl -s --max-time 5 "http://127.0.0.1:$port/readyz" || true)
if [[ $body == *'"database": "ok", "broker": "ok"'* ]]; then
  timing "web ready after up" "$(elapsed_since "$step")"
  ok "web answers /readyz on the published port: $body"
else
  fail "web answers /readyz on the published port: ${body:-no answer}"
  exit 1
fi

resolved=$(kb_podman exec "$web" python -c "import os, socket; print(os.environ['DATABASE_URL'].split('@')[1], os.environ['CELERY_BROKER_URL'], 'db=' + socket.gethostbyname('db'), 'redis=' + socket.gethostbyname('redis'))")
subnet=$(kb_podman network inspect --format '{{range .Subnets}}{{.Subnet}}{{end}}' "$network")
if [[ $resolved == db:5432/*redis://redis:6379/*db=*redis=* ]]; then
  ok "web reaches db and redis by name on $network ($subnet): $resolved"
else
  fail "web reaches db and redis by name: $resolved"
fi

for name in "$web" "$worker" "$large" "$trainer" "$beat"; do
  if healthy "$name" 120; then ok "$name: its compose healthcheck is healthy"; else fail "$name: healthy"; fi
done

token=$(kb_podman exec "$web" python manage.py drf_create_token admin | awk '{print $3}')
demo_count=$(find knowledge/demo/postgresql -maxdepth 1 -name '*.html' | wc -l)
deadline=$(($(date +%s) + 900))
ready=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  if curl -sf -o "$state/documents.json" -H "Authorization: Token $token" \
    "http://127.0.0.1:$port/api/documents/?collection=postgresql-demo&page_size=100"; then
    ready=$(json_get "$state/documents.json" "sum(1 for x in d['results'] if x['status'] == 'READY' and x['chunk_count'] > 0)")
    [ "$ready" -ge "$demo_count" ] && break
  fi
  sleep 3
done
if [ "$ready" -ge "$demo_count" ]; then
  timing "demo embedded after up" "$(elapsed_since "$step")"
  ok "the worker consumes: $ready of $demo_count demo documents embedded"
else
  fail "the worker consumes: $ready of $demo_count demo documents embedded"
fi

# The models ensure_models queued go to the training queue, which only the training worker serves.
# (A task's id in brackets marks a task run; the workers also list every task they know when they start.)
if log_shows_within 300 "$trainer" 'train_model_version\[.*succeeded' &&
  ! kb_podman logs "$worker" 2>&1 | grep -q 'train_model_version\['; then
  ok "the training worker consumes the training queue: a model trained there, none on the ingestion worker"
else
  fail "the training worker consumes the training queue"
fi

# Beat sends the recovery sweeps every minute; the worker running one shows both ends.
log_shows_within 150 "$worker" 'recover_stalled_documents.*succeeded' && swept=1 || swept=0
sent=$(kb_podman logs "$beat" 2>&1 | grep -c 'Sending due task' || true)
if [ "$sent" -gt 0 ] && [ "$swept" = 1 ]; then
  ok "beat runs: $sent due task(s) sent, the worker ran knowledge.tasks.recover_stalled_documents"
else
  fail "beat runs: $sent due task(s) sent; the worker ran none of them"
fi

compose down -v -t 30 >"$state/down.log" 2>&1 || { cat "$state/down.log"; fail "compose down -v"; }
left=$(kb_podman ps -aq --filter "label=io.podman.compose.project=$project" | wc -l)
volumes=$(kb_podman volume ls -q --filter "label=io.podman.compose.project=$project" | wc -l)
if [ "$left" = 0 ] && [ "$volumes" = 0 ]; then
  ok "down -v removes the containers and volumes"
else
  fail "down -v: $left container(s) and $volumes volume(s) left"
fi
# podman-compose 1.0.3's down leaves the network: removed here, then the firewall, links and ip_forward restored.
restore_network

timing "whole run" "$(elapsed_since "$started")"
printf '%s\n' "${timings[@]}"
if [ "$failures" -gt 0 ]; then
  say "$failures check(s) failed"
  exit 1
fi
say "all checks passed"
