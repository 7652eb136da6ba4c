#!/usr/bin/env bash
# Runs every test the way CI does: lint first, then all packages with the race
# detector. Anything a test needs (simulator, kube-apiserver, etcd) is built by
# the tests or by hack/ scripts, never installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/lint.sh
# Real kube-apiserver + etcd for the controller tests, built once and cached.
KUBEBUILDER_ASSETS=$(hack/kube-assets.sh)
export KUBEBUILDER_ASSETS
go test -race -count=1 -timeout 25m ./...
# The Helm chart's tests (charts/openepp) are a module of their own, so that
# Helm's dependencies stay out of the main go.mod.
(cd test/helmchart && go test -race -count=1 -timeout 10m ./...)
