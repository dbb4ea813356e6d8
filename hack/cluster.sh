#!/usr/bin/env bash
# Starts, inspects and stops a local Kubernetes control plane on loopback for development and the
# integration tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with
# three fake Nodes, so Deployments schedule and roll out without a container runtime.
#
#   hack/cluster.sh [--dir DIR] up [--owner-pid PID]   start (binaries built on first use)
#   hack/cluster.sh [--dir DIR] env                    print `export KUBECONFIG=...` and PATH
#   hack/cluster.sh [--dir DIR] status                 show each component; exit 1 if one is down
#   hack/cluster.sh [--dir DIR] down [--purge]         stop everything; --purge removes DIR too
#
# All state (certificates, etcd data, logs, pid files, ports, kubeconfig) lives in DIR, by default
# ${AUTHKEYRING_CLUSTER_DIR:-$PWD/.tmp/cluster}. `eval "$(hack/cluster.sh up)"` points this shell's
# kubectl at the cluster. AUTHKEYRING_BIN_DIR names a directory of prebuilt binaries to use
# instead of hack/build-controlplane.sh's cache.
#
# Lifetime: each component runs in a session of its own, detached from the caller, and is recorded
# with its pid and kernel start time so that a stale pid file never signals an unrelated process.
# With --owner-pid, a watchdog (this script in `_watch` mode) polls the owner every half second and
# tears the cluster down and removes DIR once the owner has exited, whatever the way it exited. The
# Rust test fixture relies on this, because the test harness never runs destructors of statics.
# A failed or interrupted `up` tears down whatever it had started before it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/hack/cluster.sh"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODE_COUNT=3
# Ports are drawn below the kernel's ephemeral range, so outgoing connections rarely hold them.
PORT_MIN=20000
PORT_MAX=32000
PORT_ATTEMPTS=5

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SELF" >&2
    exit 2
}

# === state files ===

DIR="${AUTHKEYRING_CLUSTER_DIR:-$PWD/.tmp/cluster}"

# Directory layout; set once DIR is final.
set_paths() {
    PKI="$DIR/pki"
    LOGS="$DIR/logs"
    PIDS="$DIR/pids"
    KUBECONFIG_FILE="$DIR/kubeconfig"
    PORTS_FILE="$DIR/ports.env"
    READY_FILE="$DIR/ready"
    WATCHDOG_FILE="$DIR/watchdog.pid"
}

# The kernel start time of a process (field 22 of /proc/PID/stat), which together with the pid
# names one process for good. Empty where /proc is missing.
start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    # After the command name: state is field 3, start time is field 22.
    set -- $stat
    echo "${20}"
}

# Succeeds when PID is a running (not zombie) process that started at START (when given).
is_running() {
    local pid=$1 start=${2:-} stat
    kill -0 "$pid" 2>/dev/null || return 1
    if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
        stat=${stat##*) }
        [[ ${stat:0:1} != Z && ${stat:0:1} != X ]] || return 1
        [[ -z "$start" || "$(start_time "$pid")" == "$start" ]] || return 1
    fi
}

# Prints the pid recorded in FILE if that very process still runs.
recorded_pid() {
    local file=$1 pid start
    [[ -f "$file" ]] || return 1
    read -r pid start <"$file" || true
    [[ -n "${pid:-}" ]] && is_running "$pid" "${start:-}" && echo "$pid"
}

component_pid() { recorded_pid "$PIDS/$1.pid"; }

record_pid() { echo "$2 $(start_time "$2")" >"$1"; }

# === processes ===

# Runs a command in a session of its own with its output in its log; the lock descriptor is closed
# so that a long-lived component never keeps the state directory locked.
spawn() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
    record_pid "$PIDS/$name.pid" $!
}

# Sends TERM to the named components at once; KILL to any still running after 15 s.
terminate() {
    local name pid pids=() deadline
    for name in "$@"; do
        if pid=$(component_pid "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
        while is_running "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
        if is_running "$pid"; then
            log "process $pid did not stop within 15 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# Stops every recorded component. etcd goes last: kube-apiserver stops in about a second, but
# retries for far longer once etcd has gone.
stop_components() {
    terminate kwok kube-scheduler kube-controller-manager kube-apiserver
    terminate etcd
    rm -f "$PIDS"/*.pid "$READY_FILE"
    rm -rf "$DIR/etcd-data"
}

stop_watchdog() {
    local pid
    if pid=$(recorded_pid "$WATCHDOG_FILE") && [[ "$pid" != "$$" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$WATCHDOG_FILE"
}

lock_dir() {
    if command -v flock >/dev/null; then
        exec 9>"$DIR/.lock"
        flock 9
    fi
}

# === ports ===

port_taken() {
    local port=$1
    if command -v ss >/dev/null; then
        [[ -n "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

CHOSEN_PORTS=" "

# Sets the variable named $1 to a loopback port that nothing uses and this run has not handed out
# yet. (No command substitution: the list of handed-out ports must survive the call.)
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % (PORT_MAX - PORT_MIN)))
        if [[ "$CHOSEN_PORTS" != *" $port "* ]] && ! port_taken "$port"; then
            CHOSEN_PORTS+="$port "
            printf -v "$1" '%s' "$port"
            return
        fi
    done
    die "found no free loopback port between $PORT_MIN and $PORT_MAX"
}

# === certificates ===

# Makes a P-256 key and a certificate for SUBJECT signed by CA (or self-signed when CA is empty).
issue_cert() {
    local out=$1 subject=$2 ca=$3 extensions=$4
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out.key" 2>/dev/null
    if [[ -z "$ca" ]]; then
        openssl req -x509 -new -key "$out.key" -subj "$subject" -days 365 -sha256 \
            -addext "$extensions" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
            -out "$out.crt" 2>/dev/null
    else
        openssl req -new -key "$out.key" -subj "$subject" 2>/dev/null \
            | openssl x509 -req -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 365 -sha256 \
                -extfile <(printf '%s\n' "$extensions" | tr ';' '\n') -out "$out.crt" 2>/dev/null
    fi
}

# The certificates envtest makes: a serving CA and a serving certificate for loopback, a separate
# client CA with an admin certificate in system:masters, and the service-account signing key pair.
make_certificates() {
    mkdir -p "$PKI"
    issue_cert "$PKI/serving-ca" "/CN=authkeyring-test-serving-ca" "" "basicConstraints=critical,CA:TRUE"
    issue_cert "$PKI/serving" "/CN=localhost" "$PKI/serving-ca" \
        "basicConstraints=critical,CA:FALSE;keyUsage=critical,digitalSignature,keyEncipherment;extendedKeyUsage=serverAuth;subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1"
    issue_cert "$PKI/client-ca" "/CN=authkeyring-test-client-ca" "" "basicConstraints=critical,CA:TRUE"
    issue_cert "$PKI/admin" "/O=system:masters/CN=admin" "$PKI/client-ca" \
        "basicConstraints=critical,CA:FALSE;keyUsage=critical,digitalSignature,keyEncipherment;extendedKeyUsage=clientAuth"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/service-account.key" 2>/dev/null
    openssl pkey -in "$PKI/service-account.key" -pubout -out "$PKI/service-account.pub" 2>/dev/null
    chmod 600 "$PKI"/*.key
}

write_kubeconfig() {
    local tmp="$KUBECONFIG_FILE.tmp"
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: authkeyring-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 <"$PKI/serving-ca.crt" | tr -d '\n')
users:
- name: admin
  user:
    client-certificate-data: $(base64 <"$PKI/admin.crt" | tr -d '\n')
    client-key-data: $(base64 <"$PKI/admin.key" | tr -d '\n')
contexts:
- name: authkeyring-test
  context: {cluster: authkeyring-test, user: admin, namespace: default}
current-context: authkeyring-test
EOF
    chmod 600 "$tmp"
    mv "$tmp" "$KUBECONFIG_FILE"
}

# === components ===

start_etcd() {
    free_port ETCD_CLIENT_PORT
    free_port ETCD_PEER_PORT
    rm -rf "$DIR/etcd-data"
    spawn etcd "$BIN/etcd" --name=authkeyring-test --data-dir="$DIR/etcd-data" \
        --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="authkeyring-test=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync=true --quota-backend-bytes=1073741824 --log-level=warn
}

etcd_ready() {
    curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'
}

start_apiserver() {
    free_port APISERVER_PORT
    spawn kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
        --tls-cert-file="$PKI/serving.crt" --tls-private-key-file="$PKI/serving.key" \
        --client-ca-file="$PKI/client-ca.crt" --authorization-mode=RBAC \
        --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/service-account.pub" \
        --service-account-signing-key-file="$PKI/service-account.key" \
        --cert-dir="$DIR/kube-apiserver" --profiling=false
}

apiserver_ready() {
    curl -fsS --max-time 2 --cacert "$PKI/serving-ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1
}

start_controller_manager() {
    free_port CONTROLLER_MANAGER_PORT
    spawn kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" \
        --authorization-kubeconfig="$KUBECONFIG_FILE" --leader-elect=false --controllers='*' \
        --service-account-private-key-file="$PKI/service-account.key" --root-ca-file="$PKI/serving-ca.crt" \
        --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" \
        --cert-dir="$DIR/kube-controller-manager" --profiling=false
}

controller_manager_ready() {
    curl -fsSk --max-time 2 "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz" >/dev/null 2>&1
}

start_scheduler() {
    free_port SCHEDULER_PORT
    cat >"$DIR/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $KUBECONFIG_FILE
leaderElection:
  leaderElect: false
EOF
    spawn kube-scheduler "$BIN/kube-scheduler" --config="$DIR/kube-scheduler.yaml" \
        --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
        --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$DIR/kube-scheduler"
}

scheduler_ready() {
    curl -fsSk --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz" >/dev/null 2>&1
}

# kwok ships no built-in Stages since v0.8: pass the fast node and pod lifecycle Stages that come
# with its module. KWOK_WORKDIR keeps a user's ~/.kwok/kwok.yaml out of the cluster.
start_kwok() {
    local stages="$BIN/kwok-stages" configs=() file
    for file in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        [[ -f "$stages/$file" ]] || die "kwok Stage $stages/$file is missing; rebuild with hack/build-controlplane.sh"
        configs+=("--config=$stages/$file")
    done
    mkdir -p "$DIR/kwok"
    KWOK_WORKDIR="$DIR/kwok" spawn kwok "$BIN/kwok" --kubeconfig="$KUBECONFIG_FILE" \
        --manage-all-nodes=true "${configs[@]}"
}

# Tail of a component's log on stderr, for failure messages.
show_log() {
    log "last lines of $LOGS/$1.log:"
    tail -n 20 "$LOGS/$1.log" >&2 || true
}

# Waits until READY succeeds for the component NAME (just started by START); when it exits because
# a port was taken meanwhile, starts it again on other ports.
await_component() {
    local name=$1 start=$2 ready=$3 timeout=$4 attempt deadline pid
    for ((attempt = 1; ; attempt++)); do
        deadline=$((SECONDS + timeout))
        while ! "$ready"; do
            if ! pid=$(component_pid "$name"); then
                if grep -qiE 'address already in use|bind: ' "$LOGS/$name.log" && ((attempt < PORT_ATTEMPTS)); then
                    log "$name lost a port to another process; starting it again on other ports"
                    "$start"
                    continue 2
                fi
                show_log "$name"
                die "$name exited during startup (log: $LOGS/$name.log); fix the cause above and rerun"
            fi
            if ((SECONDS >= deadline)); then
                show_log "$name"
                die "$name did not become ready within $timeout s (log: $LOGS/$name.log); the machine may be overloaded: rerun, or read the log"
            fi
            sleep 0.1
        done
        return
    done
}

# Three fake Nodes that kwok manages; the capacity is what the scheduler packs pods against.
create_nodes() {
    local i manifest=""
    for ((i = 0; i < NODE_COUNT; i++)); do
        manifest+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: \"8\", memory: 32Gi, pods: \"110\"}
  capacity: {cpu: \"8\", memory: 32Gi, pods: \"110\"}
"
    done
    printf '%s' "$manifest" >"$DIR/nodes.yaml"
    "$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" create -f "$DIR/nodes.yaml" >/dev/null
}

# Ready means kwok reported the Ready condition and the node lifecycle controller lifted the
# not-ready taint that admission put on every new Node, so pods can land on them.
nodes_ready() {
    local out
    out=$("$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" get nodes -o \
        'jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}{"\n"}{end}' 2>/dev/null) \
        || return 1
    [[ $(grep -c ' True' <<<"$out") -eq $NODE_COUNT ]] && ! grep -q 'node.kubernetes.io/not-ready' <<<"$out"
}

await_nodes() {
    local deadline=$((SECONDS + 60)) name
    until nodes_ready; do
        for name in kube-controller-manager kwok; do
            component_pid "$name" >/dev/null || {
                show_log "$name"
                die "$name exited while the Nodes came up (log: $LOGS/$name.log)"
            }
        done
        if ((SECONDS >= deadline)); then
            "$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" get nodes -o wide >&2 || true
            show_log kwok
            die "the Nodes did not become Ready within 60 s; read $LOGS/kwok.log and $LOGS/kube-controller-manager.log"
        fi
        sleep 0.2
    done
}

write_ports() {
    cat >"$PORTS_FILE" <<EOF
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
CONTROLLER_MANAGER_PORT=$CONTROLLER_MANAGER_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
EOF
}

# === commands ===

print_env() {
    echo "export KUBECONFIG=$KUBECONFIG_FILE"
    echo "export PATH=\"$(cat "$DIR/bin-dir"):\$PATH\""
}

all_running() {
    local name
    for name in "${COMPONENTS[@]}"; do component_pid "$name" >/dev/null || return 1; done
}

cmd_up() {
    local owner="" owner_start=""
    while (($#)); do
        case $1 in
            --owner-pid)
                owner=${2:?--owner-pid needs a pid}
                shift 2
                ;;
            *) usage ;;
        esac
    done
    if [[ -n "$owner" ]]; then
        is_running "$owner" || die "owner process $owner is not running"
        owner_start=$(start_time "$owner")
    fi
    for tool in openssl curl setsid; do
        command -v "$tool" >/dev/null || die "$tool is missing; install it (openssl, curl, util-linux) and retry"
    done

    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    set_paths
    lock_dir
    if [[ -f "$READY_FILE" ]] && all_running; then
        log "already running in $DIR"
        print_env
        return
    fi
    stop_watchdog
    stop_components

    local started=$EPOCHREALTIME
    if [[ -n "${AUTHKEYRING_BIN_DIR:-}" ]]; then
        BIN=$AUTHKEYRING_BIN_DIR
    else
        BIN=$("$ROOT/hack/build-controlplane.sh") \
            || die "the control plane binaries are not available (see the build messages above)"
    fi
    echo "$BIN" >"$DIR/bin-dir"
    mkdir -p "$LOGS" "$PIDS"
    rm -f "$LOGS"/*.log

    # From here on a failure or an interruption must not leave a half-started cluster behind.
    trap 'if [[ ! -f "$READY_FILE" ]]; then stop_watchdog; stop_components; fi' EXIT
    trap 'exit 130' INT TERM

    if [[ -n "$owner" ]]; then
        setsid "$SELF" --dir "$DIR" _watch "$owner" "$owner_start" </dev/null >"$LOGS/watchdog.log" 2>&1 9>&- &
        record_pid "$WATCHDOG_FILE" $!
    fi

    make_certificates
    start_etcd
    await_component etcd start_etcd etcd_ready 30
    start_apiserver
    await_component kube-apiserver start_apiserver apiserver_ready 60
    write_kubeconfig
    log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT after $(elapsed "$started") s"

    start_controller_manager
    start_scheduler
    start_kwok
    create_nodes
    await_component kube-controller-manager start_controller_manager controller_manager_ready 60
    await_component kube-scheduler start_scheduler scheduler_ready 60
    await_nodes
    write_ports
    touch "$READY_FILE"
    log "control plane up in $(elapsed "$started") s ($NODE_COUNT Nodes Ready); state in $DIR"
    print_env
}

elapsed() {
    local now=$EPOCHREALTIME
    awk -v a="$1" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

cmd_down() {
    local purge=false
    [[ "${1:-}" == --purge ]] && purge=true
    [[ -d "$DIR" ]] || return 0
    DIR=$(cd "$DIR" && pwd)
    set_paths
    lock_dir
    stop_watchdog
    stop_components
    log "stopped the control plane in $DIR"
    if $purge; then rm -rf "$DIR"; fi
}

cmd_status() {
    [[ -d "$DIR" ]] || die "no control plane state in $DIR; start one with: hack/cluster.sh up"
    set_paths
    local name pid code=0
    for name in "${COMPONENTS[@]}"; do
        if pid=$(component_pid "$name"); then
            printf '%-24s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-24s stopped\n' "$name"
            code=1
        fi
    done
    if pid=$(recorded_pid "$WATCHDOG_FILE"); then
        printf '%-24s running (pid %s)\n' watchdog "$pid"
    fi
    if ((code == 0)); then
        "$(cat "$DIR/bin-dir")/kubectl" --kubeconfig="$KUBECONFIG_FILE" get nodes || code=1
    fi
    return $code
}

cmd_env() {
    set_paths
    [[ -f "$KUBECONFIG_FILE" && -f "$DIR/bin-dir" ]] \
        || die "no control plane in $DIR; start one with: hack/cluster.sh up"
    print_env
}

# Runs detached from the caller: once the owner has exited, tears the cluster down and removes DIR
# (unless AUTHKEYRING_KEEP_CLUSTER is set, to read the logs afterwards).
cmd_watch() {
    local owner=$1 owner_start=${2:-}
    set_paths
    trap 'exit 0' TERM
    while is_running "$owner" "$owner_start"; do sleep 0.5; done
    trap '' TERM
    lock_dir
    log "owner $owner exited; stopping the control plane"
    stop_components
    rm -f "$WATCHDOG_FILE"
    if [[ -z "${AUTHKEYRING_KEEP_CLUSTER:-}" ]]; then rm -rf "$DIR"; fi
}

while (($#)); do
    case $1 in
        --dir)
            DIR=${2:?--dir needs a directory}
            shift 2
            ;;
        -h | --help) usage ;;
        *) break ;;
    esac
done
set_paths

case ${1:-} in
    up) cmd_up "${@:2}" ;;
    down) cmd_down "${@:2}" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    _watch) cmd_watch "${@:2}" ;;
    *) usage ;;
esac
