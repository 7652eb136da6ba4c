#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that controller tests run against
# (controller-runtime envtest), from the Go module proxy, and caches them
# outside the clone keyed by version. Prints the directory to use as
# KUBEBUILDER_ASSETS. Cold: a few minutes on 2 cores; cached: instant.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.34.3}
ETCD_VERSION=${ETCD_VERSION:-3.6.15}
CACHE=${OPENEPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openepp}
ASSETS="$CACHE/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"

if [ -x "$ASSETS/kube-apiserver" ] && [ -x "$ASSETS/etcd" ]; then
  echo "$ASSETS"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9 # one build at a time, even when test packages run in parallel
if [ -x "$ASSETS/kube-apiserver" ] && [ -x "$ASSETS/etcd" ]; then
  echo "$ASSETS"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$ASSETS.tmp" "$work/apiserver" "$work/etcd"
export GOFLAGS=-mod=mod GOWORK=off

# kube-apiserver: k8s.io/kubernetes points its staging modules at ./staging;
# pin each to the matching published v0 version instead.
minor=${K8S_VERSION#*.}; minor=${minor%%.*}
staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
{
  echo "module openepp.local/kube-apiserver"
  echo "go 1.26"
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  for m in $staging; do echo "replace k8s.io/$m => k8s.io/$m v0.${K8S_VERSION#*.}"; done
} > "$work/apiserver/go.mod"
printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > "$work/apiserver/tools.go"
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
done
echo "building kube-apiserver v$K8S_VERSION (first time only, a few minutes)..." >&2
(cd "$work/apiserver" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w $ldflags" -o "$ASSETS.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2)

printf 'module openepp.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" > "$work/etcd/go.mod"
printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/etcd/tools.go"
echo "building etcd v$ETCD_VERSION (first time only)..." >&2
(cd "$work/etcd" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$ASSETS.tmp/etcd" go.etcd.io/etcd/server/v3 >&2)

rm -rf "$ASSETS"
mv "$ASSETS.tmp" "$ASSETS"
echo "$ASSETS"
