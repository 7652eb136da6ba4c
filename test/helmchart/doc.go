// Package helmchart tests the Helm chart under charts/openepp the way Helm
// itself would use it, without a helm binary: the chart is loaded, its
// values coalesced and checked against values.schema.json, and its templates
// rendered by the Helm SDK exactly as `helm template` does, with the
// release's name and namespace and the test API server's capabilities. The
// rendered objects are then applied (server-side, dry run, and for real where
// an EPP runs with them) to a real kube-apiserver with the Inference
// Extension, Gateway API, Istio and Prometheus Operator CRDs installed
// (test/kube), held to the properties of test/policy, compared with the
// kustomize manifests, and the EPP (pkg/epp, in process) is started with the
// exact container args and environment the chart renders, as the service
// account the chart creates.
//
// It is its own Go module so that Helm's dependencies stay out of the main
// module's go.mod; hack/test.sh runs it.
package helmchart
