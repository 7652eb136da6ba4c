package epp

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/extproc"
)

// prefixOnly routes by prefix-cache match alone, so that where a prompt
// goes depends only on what the index holds (ties are random).
const prefixOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
`

// TestReplicasShareDecisions runs two EPP replicas over the same eight
// simulated servers. Prompts routed by replica A are, once A has told B,
// routed by B to the same servers; without the sync B would pick at random
// (all five agreeing by chance: 1 in 8⁵). B's other peer is a dead address,
// which must not matter.
func TestReplicasShareDecisions(t *testing.T) {
	t.Parallel()
	a, b, token := launchReplicaPair(t, prefixOnly)
	prompts, picks := bFollowsA(t, a, b)
	if page := a.metricsPage(t); counterValue(page, "openepp_replica_sync_sent_insertions_total") < float64(len(prompts)) {
		t.Errorf("A's page does not count the insertions it sent")
	}
	// A replica that starts now copies A's index before routing anything:
	// it routes the prompts as A did without any new decision to hear.
	c := launchEPP(t, 0, 0, nil, func(*running) []string {
		return []string{"--endpoints-file", b.file, "--config-text", prefixOnly, "--replica-sync-port", "0",
			"--replica-sync-peers", a.addrs.ReplicaSync, "--replica-sync-token-file", token}
	})
	eventually(t, "C to copy A's index", func() bool {
		return counterValue(c.metricsPage(t), `openepp_replica_sync_bootstrap_total{result="done"}`) == 1
	})
	if n := counterValue(c.metricsPage(t), "openepp_replica_sync_bootstrap_insertions_total"); n == 0 {
		t.Error("C's bootstrap copied nothing")
	}
	for i, p := range prompts {
		if got := c.tryRoute(p); got != picks[i] {
			t.Errorf("prompt %d: C routed to %s, A to %s", i, got, picks[i])
		}
	}

	resp, err := http.Get("http://" + b.addrs.Metrics + replicasPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s: status %d", replicasPath, resp.StatusCode)
	}
}

// launchReplicaPair starts replica B over eight simulated servers (its
// other peer a dead address, which must not matter) and replica A, which
// sends B its decisions every 5 ms; both run config and share the token
// file it returns.
func launchReplicaPair(t *testing.T, config string) (a, b *running, token string) {
	token = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b = launchEPP(t, 8, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-text", config, "--replica-sync-port", "0",
			"--replica-sync-peers", "127.0.0.1:1", "--replica-sync-token-file", token}
	})
	a = launchEPP(t, 0, 0, nil, func(*running) []string {
		return []string{"--endpoints-file", b.file, "--config-text", config, "--replica-sync-port", "0",
			"--replica-sync-peers", b.addrs.ReplicaSync, "--replica-sync-token-file", token, "--replica-sync-interval", "5ms"}
	})
	return a, b, token
}

// bFollowsA routes five prompts twice on replica A (the second pick
// follows what the first recorded), waits until B applied every one of
// A's decisions, and checks that B routes each prompt where A did. It
// returns the prompts and A's picks.
func bFollowsA(t *testing.T, a, b *running) (prompts, picks []string) {
	t.Helper()
	prompts = make([]string, 5)
	picks = make([]string, len(prompts))
	routed := 0 // A's decisions, each a record it sends B
	for i := range prompts {
		prompts[i] = fmt.Sprintf(`{"model":%q,"prompt":%q}`, b.sims[0].Model(), strings.Repeat(fmt.Sprintf("conversation %d says hello. ", i), 60))
		eventually(t, "A to see its servers", func() bool { return a.tryRoute(prompts[i]) != "" })
		picks[i] = a.tryRoute(prompts[i])
		routed += 2
	}
	// Every decision, not just one per prompt: the first prompts' repeats
	// must not stand in for the last prompts' records still in flight.
	eventually(t, "B to apply A's decisions", func() bool {
		return counterValue(b.metricsPage(t), "openepp_replica_sync_applied_insertions_total") >= float64(routed)
	})
	for i, p := range prompts {
		if got := b.route(t, p).Endpoints[0]; got != picks[i] {
			t.Errorf("prompt %d: B routed to %s, A to %s", i, got, picks[i])
		}
	}
	return prompts, picks
}

// queueOnly routes by waiting queue plus the requests routed since the
// last scrape (queue-scorer's dispatch log).
const queueOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
`

// TestReplicasShareDispatches: with --replica-sync-dispatches and scrapes
// an hour apart, replica A
// routes three requests over two idle servers (two to one, one to the
// other); replica B, told of A's dispatches, counts them as its own and
// sends its next request to the server A loaded less.
func TestReplicasShareDispatches(t *testing.T) {
	t.Parallel()
	slow := []string{"--config-text", queueOnly, "--refresh-metrics-interval", "1h", "--metrics-staleness-threshold", "1h",
		"--replica-sync-port", "0", "--replica-sync-interval", "5ms", "--replica-sync-dispatches"}
	b := launchEPP(t, 2, 0, nil, func(r *running) []string {
		return append([]string{"--endpoints-file", r.file, "--replica-sync-peers", "127.0.0.1:1"}, slow...)
	})
	a := launchEPP(t, 0, 0, nil, func(*running) []string {
		return append([]string{"--endpoints-file", b.file, "--replica-sync-peers", b.addrs.ReplicaSync}, slow...)
	})
	counts := map[string]int{}
	for range 3 {
		var got string
		eventually(t, "A to route", func() bool { got = a.tryRoute(`{"model":"m","prompt":"hi"}`); return got != "" })
		counts[got]++
	}
	if len(counts) != 2 {
		t.Fatalf("A routed %v, want both servers used", counts)
	}
	eventually(t, "B to apply A's dispatches", func() bool {
		return counterValue(b.metricsPage(t), "openepp_replica_sync_applied_dispatches_total") == 3
	})
	got := b.route(t, `{"model":"m","prompt":"hi"}`).Endpoints[0]
	if counts[got] != 1 {
		t.Errorf("B routed to %s, which A sent %d of 3 requests (%v); want the less loaded one", got, counts[got], counts)
	}
}

// tryRoute routes body and returns the chosen endpoint, or "" when the EPP
// answered with an error (no endpoint yet).
func (r *running) tryRoute(body string) string {
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
		Headers: map[string][]string{"content-type": {"application/json"}}, Body: []byte(body)})
	if err != nil || d.Immediate != nil || len(d.Endpoints) == 0 {
		return ""
	}
	return d.Endpoints[0]
}

// counterValue sums every series of the named family on a metrics page.
func counterValue(page, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

func TestReplicaSyncFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replica-sync-peers", "10.0.0.1:9004"}, "--replica-sync-peers needs --replica-sync-port"},
		{[]string{"--replica-sync-dispatches"}, "--replica-sync-dispatches needs --replica-sync-port"},
		{[]string{"--replica-sync-port", "0"}, "needs --replica-sync-peers or --replica-sync-service"},
		{[]string{"--replica-sync-port", "0", "--replica-sync-peers", "10.0.0.1"}, `"10.0.0.1" is not host:port`},
		{[]string{"--replica-sync-port", "0", "--replica-sync-service", "epp"}, "--replica-sync-service needs Kubernetes mode"},
		{[]string{"--replica-sync-port", "0", "--replica-sync-peers", "10.0.0.1:9004", "--replica-sync-token-file", "/does/not/exist"}, "--replica-sync-token-file"},
		{[]string{"--replica-sync-port", "0", "--replica-sync-peers", "10.0.0.1:9004", "--replica-sync-interval", "0s"}, "--replica-sync-interval must be > 0"},
	} {
		err := Run(context.Background(), append(tc.args, "--endpoints", "127.0.0.1:1", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"),
			WithLogger(logr.Discard()))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}
