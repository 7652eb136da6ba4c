package eppkube_test

import "testing"

// TestPoolGaugesServed: with --pool-name the metrics page has the pool
// gauges (GIE's inference_pool_* and llm-d's copies) labelled with the
// pool's name, the families the shipped dashboard and alerts read the
// pool from (deploy/grafana, deploy/prometheus).
func TestPoolGaugesServed(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ipA, ipB := nextIP(), nextIP()
	simulator(t, ipA, port)
	simulator(t, ipB, port)
	env.RunningPod(t, ns, "a", ipA, model)
	env.RunningPod(t, ns, "b", ipB, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	in.waitRoutable(t, hostPort(ipA, port), true)
	in.waitRoutable(t, hostPort(ipB, port), true)

	want := []string{
		`inference_pool_ready_pods{name="pool"} 2`,
		`llm_d_epp_ready_endpoints{name="pool"} 2`,
		`inference_pool_average_queue_size{name="pool"} `,
		`llm_d_epp_average_kv_cache_utilization{name="pool"} `,
		`llm_d_epp_std_dev_running_requests{name="pool"} `,
		`llm_d_epp_per_endpoint_queue_size{model_server_endpoint="a-rank-0",name="pool"} `,
		`inference_pool_per_pod_queue_size{model_server_pod="b-rank-0",name="pool"} `,
		"openepp_metrics_stale_endpoints 0", // both scraped: the averages are over both
		`openepp_pool_stale_endpoints{name="pool"} 0`,
	}
	eventually(t, "pool gauges on the metrics page", func() bool {
		page := in.metricsPage(t)
		for _, w := range want {
			if !hasLine(page, w) {
				return false
			}
		}
		return true
	})
}
