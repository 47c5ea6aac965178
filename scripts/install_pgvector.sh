#!/usr/bin/env bash
# Installs the pgvector extension into a Debian PostgreSQL server when it is missing.
#
# Debian bookworm ships no pgvector for PostgreSQL 15, so the source package of the next Debian release
# is fetched from the same Debian mirror this machine already uses (read from its own apt sources) and
# built against the local server. Nothing is changed when the extension is already available.
#
#   usage: scripts/install_pgvector.sh [PG_MAJOR]      (default: the newest /usr/lib/postgresql/*)
set -euo pipefail

pg_major=${1:-$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)}
if [ -z "$pg_major" ]; then
  echo "install_pgvector: no PostgreSQL server under /usr/lib/postgresql" >&2
  exit 1
fi
pg_config=/usr/lib/postgresql/$pg_major/bin/pg_config
sharedir=$("$pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pg_major")
if [ -f "$sharedir/extension/vector.control" ]; then
  echo "install_pgvector: pgvector already installed for PostgreSQL $pg_major"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
source_suite=${PGVECTOR_SOURCE_SUITE:-trixie}

# The Debian archive URI this machine is configured with (deb822 or one-line format), security archive excluded.
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'; } \
  | grep -v -- '-security' | grep -E '/debian/?$' | head -n 1
) || true
if [ -z "$mirror" ]; then
  echo "install_pgvector: could not find a Debian archive in this machine's apt sources" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/sourceparts"
chmod -R a+rX "$work"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $source_suite main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=$work/sourceparts"
          -o "Dir::State::Lists=$work/lists" -o "APT::Get::List-Cleanup=0")

echo "install_pgvector: building pgvector from $source_suite's source package for PostgreSQL $pg_major"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-server-dev-$pg_major" make gcc dpkg-dev >/dev/null
$sudo apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq pgvector && dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null)
make -s -C "$work/src" PG_CONFIG="$pg_config" with_llvm=no >/dev/null
$sudo make -s -C "$work/src" PG_CONFIG="$pg_config" with_llvm=no install >/dev/null
echo "install_pgvector: installed $(grep default_version "$sharedir/extension/vector.control")"
