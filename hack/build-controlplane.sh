#!/usr/bin/env bash
#! Builds the local test control plane (etcd, kube-apiserver, kube-controller-manager,
#! kube-scheduler, kubectl, kwok, helm) from pinned Go modules into a cache outside the checkout.
#!
#! Each component lives in its own cache directory keyed by its version, so a later run finds it
#! and returns in milliseconds. Prints the bin directory holding all binaries on stdout.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.17
KWOK_VERSION=v0.8.0
HELM_VERSION=v4.3.2

CACHE_ROOT="${AUTHKEYRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authkeyring}/controlplane"
BIN_DIR="$CACHE_ROOT/bin-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
JOBS="${GO_BUILD_JOBS:-2}"

log() { echo "build-controlplane: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$CACHE_ROOT"

# One build at a time per cache: a second caller (another test binary, say) waits for the first
# and then finds the binaries ready.
if command -v flock >/dev/null; then
    exec 8>"$CACHE_ROOT/.lock"
    if ! flock -n 8; then
        log "another build of the control plane is running; waiting for it"
        flock 8
    fi
fi

# A build is written to a temporary directory and renamed into place, so an interrupted build
# never leaves a half-written binary in the cache.
build_component() {
    local name=$1 dir=$2
    shift 2
    if [[ -f "$dir/.complete" ]]; then
        return
    fi
    command -v go >/dev/null \
        || die "$name is not built yet and the Go toolchain is missing: install Go 1.26 or newer (https://go.dev/dl) and retry"
    log "building $name (cold build; cached afterwards in $dir)"
    local start=$SECONDS
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    if ! "$@" "$dir.tmp" >"$dir.tmp.log" 2>&1; then
        tail -n 30 "$dir.tmp.log" >&2
        die "building $name failed (full log: $dir.tmp.log); check that the Go module proxy ($(go env GOPROXY)) is reachable, then rerun"
    fi
    touch "$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    rm -f "$dir.tmp.log"
    log "built $name in $((SECONDS - start)) s"
}

# Writes a wrapper module in $1 that requires $2@$3, then runs `go mod tidy` through a tools file
# that imports the main packages listed after it.
wrapper_module() {
    local dir=$1 module=$2 version=$3
    shift 3
    mkdir -p "$dir"
    {
        echo "module authkeyring.dev/controlplane/$(basename "$dir")"
        echo
        echo "go 1.26.0"
        echo
        echo "require $module $version"
    } >"$dir/go.mod"
    {
        echo "//go:build tools"
        echo
        echo "package tools"
        echo
        echo "import ("
        for pkg in "$@"; do echo "	_ \"$pkg\""; done
        echo ")"
    } >"$dir/tools.go"
}

build_kubernetes() {
    local out=$1 src
    local work="$CACHE_ROOT/src/kubernetes-$K8S_VERSION"
    src=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [[ -n "$src" ]] || { echo "could not download k8s.io/kubernetes@$K8S_VERSION"; return 1; }

    local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
    local pkgs=()
    for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    wrapper_module "$work" k8s.io/kubernetes "$K8S_VERSION" "${pkgs[@]}"

    # k8s.io/kubernetes maps its staging modules to ./staging; a wrapper must map them to their
    # published v0.x versions itself, since replace directives of dependencies are ignored.
    local staging_version="v0.${K8S_VERSION#v1.}"
    grep -E "^godebug" "$src/go.mod" >>"$work/go.mod" || true
    echo "replace (" >>"$work/go.mod"
    sed -n 's#^\t\(k8s.io/[^ ]*\) => ./staging/.*#\t\1 => \1 '"$staging_version"'#p' "$src/go.mod" >>"$work/go.mod"
    echo ")" >>"$work/go.mod"

    (cd "$work" && go mod tidy)

    local v="k8s.io/component-base/version" cv="k8s.io/client-go/pkg/version"
    local minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    local ldflags="-s -w"
    for p in "$v" "$cv"; do
        ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    (cd "$work" && go build -p "$JOBS" -trimpath -tags selinux,notest -ldflags "$ldflags" \
        -o "$out/" "${pkgs[@]}")
}

build_etcd() {
    local out=$1 work="$CACHE_ROOT/src/etcd-$ETCD_VERSION"
    wrapper_module "$work" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
    (cd "$work" && go mod tidy)
    (cd "$work" && go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
    local out=$1 work="$CACHE_ROOT/src/kwok-$KWOK_VERSION"
    wrapper_module "$work" sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
    (cd "$work" && go mod tidy)
    (cd "$work" && go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok)
    # The stages ship as YAML inside the module; keep the ones the harness needs beside the binary.
    local src
    src=$(cd "$work" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
    mkdir -p "$out/kwok-stages"
    cp -r "$src/kustomize/stage/." "$out/kwok-stages/"
    chmod -R u+w "$out/kwok-stages"
}

build_helm() {
    local out=$1 work="$CACHE_ROOT/src/helm-$HELM_VERSION"
    wrapper_module "$work" helm.sh/helm/v4 "$HELM_VERSION" helm.sh/helm/v4/cmd/helm
    (cd "$work" && go mod tidy)
    local x="helm.sh/helm/v4/internal/version"
    (cd "$work" && go build -p "$JOBS" -trimpath -ldflags "-s -w -X $x.version=$HELM_VERSION" \
        -o "$out/helm" helm.sh/helm/v4/cmd/helm)
}

build_component "etcd $ETCD_VERSION" "$CACHE_ROOT/etcd-$ETCD_VERSION" build_etcd
build_component "kubernetes $K8S_VERSION" "$CACHE_ROOT/kubernetes-$K8S_VERSION" build_kubernetes
build_component "kwok $KWOK_VERSION" "$CACHE_ROOT/kwok-$KWOK_VERSION" build_kwok
build_component "helm $HELM_VERSION" "$CACHE_ROOT/helm-$HELM_VERSION" build_helm

# One directory with every binary, so callers need a single path.
if [[ ! -f "$BIN_DIR/.complete" ]]; then
    rm -rf "$BIN_DIR"
    mkdir -p "$BIN_DIR"
    ln -s "$CACHE_ROOT/etcd-$ETCD_VERSION/etcd" "$BIN_DIR/etcd"
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
        ln -s "$CACHE_ROOT/kubernetes-$K8S_VERSION/$c" "$BIN_DIR/$c"
    done
    ln -s "$CACHE_ROOT/kwok-$KWOK_VERSION/kwok" "$BIN_DIR/kwok"
    ln -s "$CACHE_ROOT/kwok-$KWOK_VERSION/kwok-stages" "$BIN_DIR/kwok-stages"
    ln -s "$CACHE_ROOT/helm-$HELM_VERSION/helm" "$BIN_DIR/helm"
    touch "$BIN_DIR/.complete"
fi
echo "$BIN_DIR"
