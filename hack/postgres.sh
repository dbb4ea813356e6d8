#!/usr/bin/env bash
# Runs a throwaway PostgreSQL cluster on a free loopback port for the user-service tests and
# benchmarks. Installs PostgreSQL from Debian's packages when it is missing.
#
#   hack/postgres.sh start   start the cluster (or reuse the running one) and print its URL
#   hack/postgres.sh url     print the URL of the running cluster
#   hack/postgres.sh env     print `export TEST_DATABASE_URL=...`, for `eval "$(hack/postgres.sh env)"`
#   hack/postgres.sh stop    stop the cluster and delete its data
#
# Only the URL goes to stdout; progress goes to stderr. The cluster trusts every local
# connection and runs with fsync off: it is for tests, never for data that matters.
# State lives in $AUTHKEYRING_PG_DIR (default /var/tmp/authkeyring-postgres), a place the
# postgres user can reach when this runs as root.
set -euo pipefail

DIR=${AUTHKEYRING_PG_DIR:-/var/tmp/authkeyring-postgres}
DATA="$DIR/data"
DATABASE=authkeyring

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$bin" && -x "$bin/initdb" ]] && printf '%s\n' "$bin"
}

install_postgres() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed; run as root or: sudo apt-get install -y postgresql"
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
}

# Runs a command as the cluster's owner: the postgres user when we are root, else ourselves.
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

url() {
    printf 'postgres://postgres@127.0.0.1:%s/%s\n' "$(cat "$DIR/port")" "$DATABASE"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        port_in_use "$port" || { printf '%s\n' "$port"; return; }
    done
    die "no free loopback port found"
}

start() {
    BIN=$(pg_bin) || { install_postgres; BIN=$(pg_bin) || die "PostgreSQL installed but initdb not found"; }

    if running; then
        log "reusing the cluster in $DIR"
        url
        return
    fi

    # A cluster left behind by a reboot or a crash is thrown away, not repaired.
    rm -rf "$DIR"
    install -d -m 700 "$DIR"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$DIR"

    local port
    port=$(free_port)
    log "initialising a cluster in $DIR"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-instructions >/dev/null
    log "starting PostgreSQL on 127.0.0.1:$port"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start -o \
        "-p $port -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null || { cat "$DIR/server.log" >&2; die "PostgreSQL did not start"; }
    printf '%s\n' "$port" >"$DIR/port"

    as_owner "$BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DATABASE"
    url
}

stop() {
    BIN=$(pg_bin) || { log "PostgreSQL is not installed; nothing to stop"; return; }
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        log "stopped the cluster in $DIR"
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url)
        BIN=$(pg_bin) || die "PostgreSQL is not installed; run: hack/postgres.sh start"
        running || die "no cluster is running; run: hack/postgres.sh start"
        url
        ;;
    env)
        BIN=$(pg_bin) || die "PostgreSQL is not installed; run: hack/postgres.sh start"
        running || die "no cluster is running; run: hack/postgres.sh start"
        printf 'export TEST_DATABASE_URL=%s\n' "$(url)"
        ;;
    *)
        printf 'usage: %s start|stop|url|env\n' "$0" >&2
        exit 2
        ;;
esac
