// Package dcgm publishes every endpoint's GPU utilization, read from the
// NVIDIA DCGM Exporter, as an endpoint attribute that filters and scorers
// read by name: llm-d's dcgm-data-source and dcgm-extractor.
//
// The source polls the exporter, GET <scheme>://<host>:<port><path>
// (default http, port 9400, /metrics), every interval (default 1s: DCGM
// refreshes its fields about once a second). The host is the endpoint's
// address, for an exporter running as a sidecar in the model server's pod,
// or with useNodeAddress the node's IP (endpoint.Spec.NodeAddress), for the
// exporter's DaemonSet; endpoints on one node share that exporter, so each
// host:port is fetched once a round and its page handed to every endpoint
// on it. An endpoint without a node address in that mode (a static one) is
// skipped: counted once in openepp_dcgm_skipped_endpoints_total and logged,
// its attribute left absent. The page is parsed as Prometheus text (the
// metrics scraper's parser and name validation) and the families handed to
// the paired extractors.
//
// The extractor reads DCGM_FI_DEV_GPU_UTIL (a gauge, percent): of its
// samples it keeps those of the endpoint's pod (a sample's pod label equal
// to Spec.Pod, else Spec.Name) and those without a pod label (a sidecar's
// or an exporter without Kubernetes mapping), takes the largest (the
// busiest of the pod's GPUs) and stores it divided by 100, in [0, 1], under
// UtilizationKey, "GPUUtilization/dcgm-extractor". With no such sample the
// attribute is removed.
//
// A poll that fails (refused, timed out after timeout, default 1s, not
// 200, larger than MaxPageBytes, not Prometheus text) is counted by reason
// in openepp_dcgm_poll_errors_total (also llm-d's
// llm_d_epp_datalayer_poll_errors_total{source_type="dcgm-data-source"})
// and keeps the endpoints' previous values; after three failures in a row
// the attribute is removed, so routing never uses a dead exporter's
// numbers for long. Failures are logged at V(1) when an exporter's reason
// changes (at most once a minute per exporter), when its values are
// dropped and when it recovers, not on every poll. A stopped source (a
// reload that replaced or removed it, or shutdown) removes the attribute
// from the pool, so no frozen numbers stay behind.
package dcgm
