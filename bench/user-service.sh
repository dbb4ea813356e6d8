#!/usr/bin/env bash
# Benchmarks the user-service's `GET /users/7` against a bare axum handler (the ceiling) and the
# seed's Flask service under gunicorn (the peer), in one run on this machine, with wrk. The
# user-service runs as shipped (SQLite, 1000 demo users, default logging, a database read per
# request), once per key type; again with the verified-token memo off, so every request checks
# its signature in full; and once with the opt-in profile cache on, for comparison.
#
#   bench/user-service.sh        build, install what is missing, measure, print a table
#
# Every target is measured once per round, ROUNDS times, and the table shows each target's median:
# on a shared machine one measurement of the ceiling can be a fifth off the next.
#
# Settings (environment): ROUNDS (3), DURATION (5s), CONNECTIONS (50), THREADS (2), WARMUP (2s),
# BENCH_CACHE (~/.cache/authkeyring/bench: the Python venv and the run's scratch files).
# wrk comes from Debian's packages, Flask, PyJWT and gunicorn from PyPI into a venv; both are
# installed on first use. Every server listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authkeyring/bench}
SECRET=bench-secret-not-for-production
PORT=18480

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

install_wrk() {
    command -v wrk >/dev/null && return
    [[ $EUID -eq 0 ]] || die "wrk is missing: sudo apt-get install -y wrk"
    log "installing wrk from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
}

install_python() {
    local venv="$CACHE/venv"
    if [[ ! -x "$venv/bin/gunicorn" ]]; then
        log "installing Flask, PyJWT and gunicorn into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            'flask>=3,<4' 'pyjwt[crypto]>=2.8,<3' 'gunicorn>=22,<24'
    fi
    PYTHON="$venv/bin/python"
    GUNICORN="$venv/bin/gunicorn"
}

SERVER_PID=
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

wait_until_serving() {
    for _ in $(seq 1 200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/users/7" && return
        kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see $WORK/server.log"
        sleep 0.05
    done
    die "the server did not start; see $WORK/server.log"
}

# Converts a wrk latency (e.g. 812.00us, 1.20ms, 1.01s) to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

# measure NAME TOKEN: warms the running server up, then records req/s, p50 and p99.
measure() {
    local name=$1 token=$2 out="$WORK/$1.wrk"
    local url="http://127.0.0.1:$PORT/users/7"
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "$WARMUP" -H "Authorization: Bearer $token" "$url" >/dev/null
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -H "Authorization: Bearer $token" "$url" >"$out"

    local rps p50 p99 bad
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    [[ -z "$bad" ]] || die "$name answered $bad requests with an error status; see $out"
    printf '%s %s %s %s\n' "$name" "$rps" "$p50" "$p99" >>"$WORK/results"
    log "$name: $rps req/s, p50 ${p50} ms, p99 ${p99} ms"
}

run_user_service() {
    local name=$1 token=$2
    shift 2
    rm -f "$WORK"/users.db*
    env -i PATH="$PATH" PORT=$PORT BIND_ADDRESS=127.0.0.1 DEMO_USERS=1000 \
        DATABASE_URL="sqlite://$WORK/users.db" "$@" \
        "$ROOT/target/release/user-service" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving
    measure "$name" "$token"
    stop_server
}

main() {
    mkdir -p "$CACHE"
    WORK="$CACHE/run"
    rm -rf "$WORK" && mkdir -p "$WORK"

    install_wrk
    install_python
    log "building the release binaries"
    (cd "$ROOT" && cargo build --release --locked --bin user-service --example ceiling >&2)

    "$PYTHON" "$ROOT/bench/mint.py" "$SECRET" "$WORK"
    hs256=$(cat "$WORK/hs256.token")
    es256=$(cat "$WORK/es256.token")
    eddsa=$(cat "$WORK/eddsa.token")
    jwks=$(cat "$WORK/jwks.json")

    log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    local round
    for round in $(seq 1 "$ROUNDS"); do
        log "round $round of $ROUNDS"
        one_round
    done
    log "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    report
}

# Every target once, the ceiling first, so that each round's ratios come from one stretch of time.
one_round() {
    PORT=$PORT "$ROOT/target/release/examples/ceiling" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving
    measure ceiling "$hs256"
    stop_server

    # As shipped: the verified-token memo on, the profile cache off, a database read per request.
    run_user_service user-service-hs256 "$hs256" JWT_SECRET="$SECRET"
    run_user_service user-service-es256 "$es256" JWT_JWKS="$jwks"
    run_user_service user-service-eddsa "$eddsa" JWT_JWKS="$jwks"

    # Without the memo: every request also checks its signature in full.
    local nomemo=(TOKEN_CACHE_CAPACITY=0)
    run_user_service user-service-hs256-nomemo "$hs256" JWT_SECRET="$SECRET" "${nomemo[@]}"
    run_user_service user-service-es256-nomemo "$es256" JWT_JWKS="$jwks" "${nomemo[@]}"
    run_user_service user-service-eddsa-nomemo "$eddsa" JWT_JWKS="$jwks" "${nomemo[@]}"

    # The opt-in profile cache, which skips the database read for a profile read in the last
    # second; not the default, because other replicas' writes reach it only after the TTL.
    run_user_service user-service-hs256-profilecache "$hs256" JWT_SECRET="$SECRET" USER_CACHE_TTL=1

    # gunicorn's usual sizing: two sync workers per core, plus one.
    (cd "$ROOT/bench" && JWT_SECRET=$SECRET exec "$GUNICORN" --bind "127.0.0.1:$PORT" \
        --workers $((2 * $(nproc) + 1)) --log-level warning seed_app:app) >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving
    measure flask-gunicorn "$hs256"
    stop_server
}

# Prints the median of each figure per target over the rounds, and the ratios of the medians.
report() {
    awk '
        function median(list, n,    sorted, i, j, t) {
            split(list, sorted, " ")
            for (i = 2; i <= n; i++) for (j = i; j > 1 && sorted[j - 1] + 0 > sorted[j] + 0; j--) {
                t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t
            }
            return n % 2 ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
        }
        !($1 in count) { order[++targets] = $1 }
        { count[$1]++; rps[$1] = rps[$1] " " $2; p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4 }
        END {
            c = median(rps["ceiling"], count["ceiling"]); f = median(rps["flask-gunicorn"], count["flask-gunicorn"])
            printf "| target | req/s | p50 ms | p99 ms | vs ceiling | vs Flask |\n"
            printf "| --- | ---: | ---: | ---: | ---: | ---: |\n"
            for (i = 1; i <= targets; i++) {
                t = order[i]; n = count[t]; r = median(rps[t], n)
                printf "| %s | %.0f | %.2f | %.2f | %.0f%% | %.1fx |\n", t, r, median(p50[t], n), median(p99[t], n), 100 * r / c, r / f
            }
        }' "$WORK/results"
}

main "$@"
