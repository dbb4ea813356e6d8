#!/usr/bin/env bash
# The whole product on one machine: a local Kubernetes control plane (built on first use), the CRD
# and the Helm chart, the operator running with the chart's ServiceAccount, a sample AuthKeyRing,
# the user-service answering tokens minted from it, a staged rotation, and the user-service still
# answering old and new tokens.
#
#   hack/demo.sh            run the demo, then tear everything down
#   hack/demo.sh --keep     leave the cluster and processes running; `hack/cluster.sh --dir .tmp/demo env`
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEEP=${1:-}
DEMO=.tmp/demo
NS=demo

step() { printf '\n==> %s\n' "$*" >&2; }

step "building authkeyring and user-service"
cargo build --release --bins --locked
BIN=$ROOT/target/release

step "starting the local control plane"
mkdir -p "$DEMO"
hack/cluster.sh --dir "$DEMO/cluster" up >/dev/null
eval "$(hack/cluster.sh --dir "$DEMO/cluster" env)"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ "$KEEP" != "--keep" ]]; then hack/cluster.sh --dir "$DEMO/cluster" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

step "installing the CRD and the chart"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd/authkeyrings.authkeyring.dev --timeout=30s
helm upgrade --install authkeyring charts/authkeyring -n authkeyring-system --create-namespace

step "running the operator as the chart's ServiceAccount (RBAC as granted by the chart)"
TOKEN=$(kubectl create token authkeyring -n authkeyring-system --duration=2h)
OPERATOR_KUBECONFIG=$DEMO/operator-kubeconfig
SERVER=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
CA_DATA=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
cat >"$OPERATOR_KUBECONFIG" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$SERVER", certificate-authority-data: "$CA_DATA"}}]
users: [{name: authkeyring, user: {token: "$TOKEN"}}]
contexts: [{name: authkeyring, context: {cluster: local, user: authkeyring, namespace: authkeyring-system}}]
current-context: authkeyring
KUBECONFIG
KUBECONFIG=$OPERATOR_KUBECONFIG "$BIN/authkeyring" operator --metrics-addr 127.0.0.1:18080 >"$DEMO/operator.log" 2>&1 &
PIDS+=($!)

step "creating the sample AuthKeyRing and the user-service Deployment in namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n "$NS" -f examples/authkeyring.yaml -f examples/user-service.yaml
kubectl wait -n "$NS" --for=condition=Ready akr/user-service-jwt --timeout=60s
kubectl get akr -n "$NS"

# kubelet would project the Secret into the pod; this does the same for the local user-service,
# with kubelet's ..data symlink swap.
KEYDIR=$DEMO/keyring
project_secret() {
    local ts
    ts="..$(date +%Y_%m_%d_%H_%M_%S.%N)"
    mkdir -p "$KEYDIR/$ts"
    kubectl get secret auth-secrets -n "$NS" -o jsonpath='{.data.jwks\.json}' | base64 -d >"$KEYDIR/$ts/jwks.json"
    ln -sfn "$ts" "$KEYDIR/..data_tmp"
    mv -T "$KEYDIR/..data_tmp" "$KEYDIR/..data"
    ln -sfn "..data/jwks.json" "$KEYDIR/jwks.json"
}
project_secret
(while sleep 1; do project_secret; done) &
PIDS+=($!)

step "starting the user-service with the key ring mounted"
rm -f "$DEMO/users.db"
PORT=18081 AUTH_KEYRING_DIR=$KEYDIR DATABASE_URL="sqlite://$ROOT/$DEMO/users.db?mode=rwc" \
    "$BIN/user-service" --demo-users 100 >"$DEMO/user-service.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -fs localhost:18081/readyz >/dev/null && break; sleep 0.2; done

call() { curl -s -w ' -> HTTP %{http_code}\n' -H "Authorization: Bearer $1" "localhost:18081/users/$2"; }

OLD=$("$BIN/authkeyring" token user-service-jwt -n "$NS" --user-id 7)
step "GET /users/7 as user 7"; call "$OLD" 7
step "GET /users/8 as user 7 (not admin)"; call "$OLD" 8

step "rotating: publish the new key, roll the user-service, then promote it"
"$BIN/authkeyring" rotate user-service-jwt -n "$NS" --wait --timeout 5m
"$BIN/authkeyring" status user-service-jwt -n "$NS"
sleep 2

NEW=$("$BIN/authkeyring" token user-service-jwt -n "$NS" --user-id 7 --admin)
step "GET /users/8 with a token from the new key (admin)"; call "$NEW" 8
step "GET /users/7 with the token from the superseded key, still verifying"; call "$OLD" 7
kubectl get akr -n "$NS"
kubectl get events -n "$NS" --field-selector involvedObject.kind=AuthKeyRing -o custom-columns=REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp 2>/dev/null \
    || kubectl get events -n "$NS"
