#!/usr/bin/env bash
# The Isthmus demo: two local clusters, a short kubectl tour, then everything is cleaned up again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DIR=$(mktemp -d /tmp/isthmus-demo.XXXXXX)
CACHE="$DIR/kubectl-cache"
cleanup() { "$BIN/isthmus" local down --purge --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
k() { echo "\$ kubectl $*"; kubectl --kubeconfig "$DIR/kubeconfig" --cache-dir "$CACHE" "$@"; }

step "Start two local clusters"
"$BIN/isthmus" local up --clusters 2 --dir "$DIR"
"$BIN/isthmus" local status --dir "$DIR"

step "Each cluster is a Kubernetes API that the real kubectl drives"
k --context cluster1 version
k --context cluster1 get namespaces
k --context cluster2 get services -A

step "The seed's first steps: a namespace, a labelled Secret, an applied manifest"
k --context cluster1 create namespace istio-system
mkdir -p "$DIR/work"
printf 'apiVersion: v1\nkind: Config\n' > "$DIR/work/cluster2"
k --context cluster1 create secret generic cluster2 --from-file "$DIR/work/cluster2" -n istio-system
k --context cluster1 label secret cluster2 istio/multiCluster=true -n istio-system
k --context cluster1 get secrets -n istio-system -l istio/multiCluster=true
cat <<'YAML' | k --context cluster2 apply -f -
apiVersion: v1
kind: Namespace
metadata:
  name: sample
---
apiVersion: v1
kind: Service
metadata:
  name: helloworld
  namespace: sample
spec:
  selector:
    app: helloworld
  ports:
  - name: http
    port: 5000
YAML
k --context cluster2 get service helloworld -n sample -o wide

step "State survives down and up"
"$BIN/isthmus" local down --dir "$DIR"
"$BIN/isthmus" local up --dir "$DIR"
k --context cluster2 get service helloworld -n sample

step "Done: cleaning up"
