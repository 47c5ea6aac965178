# shellcheck shell=bash
# Podman for this project's container checks, set up in a folder of its own outside the repository; nothing under
# /etc/containers is read for settings or changed (as root, podman still keeps a small blob-info cache in
# /var/lib/containers/cache, which no setting moves). Source it:   . scripts/podman_env.sh
#
# Sourcing defines the functions below, exports the variables and writes the configuration files (cheap,
# idempotent). It installs nothing, pulls nothing and never contacts a container registry.
#
# Variables
#   KB_CONTAINER_CACHE   the folder (default /var/tmp/kb-containers): config/, storage/ (images, layer cache,
#                        volumes), networks/, events.log. Delete it to start as a new machine would.
#   CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF   exported, pointing into config/
#   KB_PIP_VOLUMES       array filled by kb_pip_access_volumes
#
# Functions (a stable interface: other scripts rely on these names and arguments)
#   kb_podman_install [--stack]    apt-get installs podman, runc, debootstrap and netavark when absent; with --stack
#                                  also aardvark-dns, iptables, podman-compose (bridge networks, DNS) and
#                                  nftables (its `nft` to record and restore the firewall around a stack run)
#   kb_podman ARGS...              podman with these settings (through sudo when not root)
#   kb_podman_compose ARGS...      podman-compose with these settings (through sudo when not root)
#   kb_debian_mirror               prints the Debian archive URI of this machine's own apt sources
#   kb_base_image SUITE            makes localhost/kb-debian:SUITE (bookworm or trixie) with
#                                  `debootstrap --variant=minbase` from that mirror and `podman import`, only when
#                                  the image is absent; prints the image name
#   kb_apt_image SUITE IMAGE PACKAGE...
#                                  makes IMAGE (e.g. localhost/kb-python:bookworm) from kb-debian:SUITE with the
#                                  Debian packages installed, only when IMAGE is absent; prints IMAGE
#   kb_pip_access_volumes          sets KB_PIP_VOLUMES to `--volume X:X:ro` arguments for the host's pip settings
#                                  (/etc/pip.conf, /etc/xdg/pip, $PIP_CONFIG_FILE) and the CA bundles they name:
#                                  for `podman build` or `podman run`, so they are read at build/run time and never
#                                  copied into an image
#
# Check lines, shared by the smoke scripts (they keep `failures` and the `timings` array):
#   ok TEXT / fail TEXT            print "check: ok   TEXT" / "check: FAIL TEXT" (fail counts in $failures)
#   timing NAME SECONDS            print and keep "timing: NAME SECONDS s";  elapsed_since EPOCH   seconds since
#
# The settings, and why: runc (crun 1.8 refuses hybrid cgroup hierarchies), cgroupfs (no systemd as PID 1), file
# events (no journald), host networking unless a network is asked for, and default ulimits no higher than this
# shell's hard limits (nofile at `ulimit -Hn`, nproc at most 32768): podman's own defaults exceed them and runc then
# fails with `setrlimit ... Operation not permitted`. Without systemd podman never schedules healthchecks: run
# `kb_podman healthcheck run NAME`.

KB_CONTAINER_CACHE=${KB_CONTAINER_CACHE:-/var/tmp/kb-containers}
export KB_CONTAINER_CACHE

ok() { printf 'check: ok   %s\n' "$*"; }
fail() {
  printf 'check: FAIL %s\n' "$*"
  failures=$((failures + 1))
}
timing() { timings+=("$(printf 'timing: %-26s %6ss' "$1" "$2")"); printf '%s\n' "${timings[-1]}"; }
elapsed_since() { echo $(($(date +%s) - $1)); }
KB_SUDO=""
[ "$(id -u)" -eq 0 ] || KB_SUDO="sudo"

_kb_podman_configure() {
  local cache=$KB_CONTAINER_CACHE conf run nofile nproc boot
  conf=$cache/config
  # The run-time state (locks, mounts, the "alive" marker) must not outlive a reboot, and /run is not always a
  # tmpfs; each cache folder has its own, or two of them would share mount counts.
  run=/run/kb-containers
  [ "$cache" = /var/tmp/kb-containers ] || run=$run-$(printf '%s' "$cache" | sha256sum | cut -c1-12)
  $KB_SUDO mkdir -p "$conf" "$cache/storage" "$cache/networks" "$run"
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  if [ "$(cat "$cache/boot_id" 2>/dev/null)" != "$boot" ]; then
    $KB_SUDO rm -rf "${run:?}/storage" "${run:?}/libpod"
    echo "$boot" | $KB_SUDO tee "$cache/boot_id" >/dev/null
  fi
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  nproc=$(ulimit -Hu)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi

  $KB_SUDO tee "$conf/containers.conf.new" >/dev/null <<EOF
# Written by scripts/podman_env.sh; see the comments there.
[containers]
netns = "host"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$cache/events.log"
tmp_dir = "$run/libpod"
image_default_format = "docker"

[network]
network_backend = "netavark"
network_config_dir = "$cache/networks"
EOF
  $KB_SUDO tee "$conf/storage.conf.new" >/dev/null <<EOF
# Written by scripts/podman_env.sh.
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$run/storage"
EOF
  # Images are made here or imported; a short name never resolves to a registry.
  $KB_SUDO tee "$conf/registries.conf.new" >/dev/null <<EOF
# Written by scripts/podman_env.sh.
unqualified-search-registries = []
short-name-mode = "disabled"
EOF
  local f
  for f in containers.conf storage.conf registries.conf; do
    if cmp -s "$conf/$f.new" "$conf/$f"; then
      $KB_SUDO rm -f "$conf/$f.new"
    else
      $KB_SUDO mv -f "$conf/$f.new" "$conf/$f"
    fi
  done
  export CONTAINERS_CONF=$conf/containers.conf
  export CONTAINERS_STORAGE_CONF=$conf/storage.conf
  export CONTAINERS_REGISTRIES_CONF=$conf/registries.conf
}

_kb_preserved_env="CONTAINERS_CONF,CONTAINERS_STORAGE_CONF,CONTAINERS_REGISTRIES_CONF,KB_CONTAINER_CACHE"

kb_podman() {
  # Without systemd, podman reports on every run, stop and removal of a container with a healthcheck that it could
  # not (un)schedule its timer; that is expected here (`kb_podman healthcheck run NAME` runs it), so it is not shown.
  if [ -n "$KB_SUDO" ]; then
    sudo --preserve-env="$_kb_preserved_env" podman "$@"
  else
    podman "$@"
  fi 2> >(grep -v 'unable to get systemd connection' >&2)
}

kb_podman_compose() {
  # The whole environment: compose files take their variables from it.
  if [ -n "$KB_SUDO" ]; then
    sudo --preserve-env podman-compose "$@"
  else
    podman-compose "$@"
  fi
}

kb_podman_install() {
  # netavark always: podman looks for its network backend even for a host-network container.
  local want=(podman runc debootstrap netavark) missing=() p
  [ "${1:-}" = "--stack" ] && want+=(aardvark-dns iptables podman-compose nftables)
  for p in "${want[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "podman_env: installing ${missing[*]}" >&2
  $KB_SUDO apt-get update -qq
  $KB_SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kb_debian_mirror() {
  local mirror
  mirror=$(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'; } \
      | grep -v -- '-security' | grep -E '/debian/?$' | head -n 1
  ) || true
  if [ -z "$mirror" ]; then
    echo "podman_env: no Debian archive in this machine's apt sources" >&2
    return 1
  fi
  echo "$mirror"
}

_kb_image_exists() { kb_podman image exists "$1"; }

kb_base_image() {
  local suite=${1:?suite: bookworm or trixie} image mirror root rc=0
  image=localhost/kb-debian:$suite
  case "$suite" in bookworm | trixie) ;; *) echo "podman_env: unknown suite $suite" >&2; return 2 ;; esac
  (
    # One maker at a time per suite: another script may be making the same base.
    set -o pipefail
    exec 9>"$KB_CONTAINER_CACHE/base-$suite.lock"
    flock 9
    _kb_image_exists "$image" && exit 0
    mirror=$(kb_debian_mirror) || exit 1
    root=$(mktemp -d "$KB_CONTAINER_CACHE/rootfs-$suite.XXXXXX")
    trap '$KB_SUDO rm -rf "$root"' EXIT
    echo "podman_env: debootstrap --variant=minbase $suite" >&2
    $KB_SUDO debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
      tail -n 20 "$root.log" >&2
      rm -f "$root.log"
      exit 1
    }
    rm -f "$root.log"
    $KB_SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    $KB_SUDO tar -C "$root" --numeric-owner -cf - . \
      | kb_podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
  ) || rc=$?
  [ "$rc" -eq 0 ] && echo "$image"
  return "$rc"
}

kb_apt_image() {
  local suite=${1:?suite} image=${2:?image} rc=0 dir
  shift 2
  _kb_image_exists "$image" && { echo "$image"; return 0; }
  kb_base_image "$suite" >/dev/null || return 1
  dir=$(mktemp -d)
  cat >"$dir/Containerfile" <<EOF
FROM localhost/kb-debian:$suite
RUN apt-get update -qq \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
EOF
  echo "podman_env: making $image ($*)" >&2
  kb_podman build --quiet --network host --format docker --pull=never -t "$image" "$dir" >/dev/null || rc=$?
  rm -rf "$dir"
  [ "$rc" -eq 0 ] && echo "$image"
  return "$rc"
}

kb_pip_access_volumes() {
  local paths=() p seen=" "
  KB_PIP_VOLUMES=()
  for p in /etc/pip.conf /etc/xdg/pip "${PIP_CONFIG_FILE:-}"; do
    [ -n "$p" ] && [ -e "$p" ] && paths+=("$p")
  done
  # The CA bundles those settings name (cert = ...), PIP_CERT's, and the system bundle pip's own settings point at.
  while read -r p; do
    [ -n "$p" ] && [ -f "$p" ] && paths+=("$p")
  done < <(
    { [ ${#paths[@]} -gt 0 ] && grep -rhsE '^\s*cert\s*=' "${paths[@]}" | sed -E 's/^\s*cert\s*=\s*//'
      echo "${PIP_CERT:-}"
      echo /etc/ssl/certs/ca-certificates.crt; } | sed -E 's/\s+$//'
  )
  for p in "${paths[@]}"; do
    case "$seen" in *" $p "*) continue ;; esac
    seen="$seen$p "
    KB_PIP_VOLUMES+=(--volume "$p:$p:ro")
  done
}

_kb_podman_configure
