package server_test

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/server"
)

// bigCompletion is a valid completions body of about n bytes.
func bigCompletion(n int) []byte {
	return completion(strings.Repeat("lorem ipsum ", n/12))
}

// split cuts b into pieces of at most n bytes.
func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// TestRoutingAnswerHeldUntilBodyEnd checks, over TLS, that no reply reaches
// Envoy before the request body's last chunk: the EPP must see the whole
// body to schedule.
func TestRoutingAnswerHeldUntilBodyEnd(t *testing.T) {
	t.Parallel()
	h := start(t, setup{tls: true})
	var tr extproc.Transcript
	s := h.open(t, extproc.WithRecorder(&tr))
	ctx := testCtx(t)
	body := bigCompletion(200 << 10)
	req := post("/v1/completions", body, "content-length", strconv.Itoa(len(body)))
	if err := s.SendRequestHeaders(ctx, req, false); err != nil {
		t.Fatal(err)
	}
	parts := split(body, 16<<10)
	for _, p := range parts[:len(parts)-1] {
		if err := s.SendRequestBody(ctx, p, false); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // give a premature reply time to arrive
	for _, m := range tr.Messages() {
		if m.Direction == extproc.Received {
			t.Fatalf("reply %q before the body ended", m.Kind())
		}
	}
	if err := s.SendRequestBody(ctx, parts[len(parts)-1], true); err != nil {
		t.Fatal(err)
	}
	d, err := s.AwaitDecision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := tr.Kinds()
	lastSent, firstRecv := -1, slices.Index(kinds, "recv request_headers")
	for i, k := range kinds {
		if k == "send request_body" {
			lastSent = i
		}
	}
	if firstRecv < lastSent {
		t.Errorf("headers reply at %d, before the last body chunk sent at %d: %v", firstRecv, lastSent, kinds)
	}
	if !bytes.Equal(d.Body, body) {
		t.Errorf("forwarded body differs from the request body (%d vs %d bytes)", len(d.Body), len(body))
	}
}

// TestRoutingAnswer checks what Envoy receives with the answer: the same
// destination in the header and in envoy.lb metadata, clear_route_cache,
// and the body as streamed_response chunks of at most 62,000 bytes.
func TestRoutingAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		maxPicks  int
		body      []byte
		trailers  http.Header
		wantPicks int
		wantEOS   bool
	}{
		{name: "one endpoint, 200 KB body", maxPicks: 1, body: bigCompletion(200 << 10), wantPicks: 1, wantEOS: true},
		{name: "fallback list of 3", maxPicks: 3, body: completion("hello"), wantPicks: 3, wantEOS: true},
		{name: "trailers end the body", maxPicks: 1, body: bigCompletion(100 << 10), trailers: http.Header{"X-Checksum": {"abc"}}, wantPicks: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, setup{endpoints: endpointsAt(5), picker: maxScore(t, tc.maxPicks)})
			var tr extproc.Transcript
			req := post("/v1/completions", tc.body)
			req.Trailers = tc.trailers
			d := h.route(t, req, extproc.WithRecorder(&tr))
			checkDestination(t, h, d, tc.wantPicks)
			chunks, eos := streamedChunks(t, &tr)
			if !bytes.Equal(bytes.Join(chunks, nil), tc.body) || !bytes.Equal(d.Body, tc.body) {
				t.Errorf("reassembled body differs from the request body")
			}
			if eos != tc.wantEOS {
				t.Errorf("end_of_stream on the last chunk = %v, want %v", eos, tc.wantEOS)
			}
			if tc.trailers != nil && d.Trailers.Get("X-Checksum") != "abc" {
				t.Errorf("trailers = %v, want X-Checksum: abc", d.Trailers)
			}
		})
	}
}

// checkDestination checks the destination header, its envoy.lb twin and
// clear_route_cache.
func checkDestination(t *testing.T, h *harness, d *extproc.Decision, picks int) {
	t.Helper()
	if d.DestinationHeader != d.LBDestination {
		t.Errorf("header %q != envoy.lb metadata %q", d.DestinationHeader, d.LBDestination)
	}
	if got := d.DynamicMetadata[server.LBNamespace][server.DestinationHeader]; got != d.DestinationHeader {
		t.Errorf("envoy.lb metadata = %v, want %q", got, d.DestinationHeader)
	}
	if !d.ClearRouteCache {
		t.Error("clear_route_cache not set")
	}
	if got := strings.Join(d.Endpoints, ","); got != d.DestinationHeader {
		t.Errorf("destination %q is not a plain ip:port,ip:port list (parsed %q)", d.DestinationHeader, got)
	}
	if len(d.Endpoints) != picks {
		t.Fatalf("got %d endpoints %v, want %d", len(d.Endpoints), d.Endpoints, picks)
	}
	pool := map[string]bool{}
	for _, e := range h.store.Snapshot() {
		pool[e.HostPort] = true
	}
	seen := map[string]bool{}
	for _, e := range d.Endpoints {
		if !pool[e] || seen[e] {
			t.Errorf("endpoint %q is not a distinct pool member (%v)", e, d.Endpoints)
		}
		seen[e] = true
	}
}

// streamedChunks returns the request-body streamed_response chunks the
// client received, checking each against the 62,000-byte limit, and whether
// the last carried end_of_stream.
func streamedChunks(t *testing.T, tr *extproc.Transcript) (chunks [][]byte, lastEOS bool) {
	t.Helper()
	for _, m := range tr.Messages() {
		if m.Kind() != "recv request_body" {
			continue
		}
		sr := m.Response.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if n := len(sr.GetBody()); n > server.BodyChunkLimit {
			t.Errorf("streamed chunk of %d bytes exceeds %d", n, server.BodyChunkLimit)
		}
		if lastEOS {
			t.Error("chunk after the one carrying end_of_stream")
		}
		chunks = append(chunks, sr.GetBody())
		lastEOS = sr.GetEndOfStream()
	}
	return chunks, lastEOS
}

// subsetPool has two endpoints on one IP (two ports) and two more IPs.
func subsetPool() []endpoint.Spec {
	return []endpoint.Spec{
		{Name: "a-8000", Address: "10.1.0.1", Port: 8000},
		{Name: "a-8001", Address: "10.1.0.1", Port: 8001},
		{Name: "b", Address: "10.1.0.2", Port: 8000},
		{Name: "c", Address: "10.1.0.3", Port: 8000},
		{Name: "v6", Address: "fd00:0:0::7", Port: 8000},
	}
}

// TestSubsetHint checks the proxy's envoy.lb.subset_hint: exact ip:port
// entries, IP-only entries admitting every port of the IP, list and
// comma-separated forms, IPs however spelled, 503 when nothing is eligible
// (the client reports destinations as Envoy parses them: [fd00::7]). The random picker
// returns every candidate, so the answer shows the candidate set.
func TestSubsetHint(t *testing.T) {
	t.Parallel()
	all := []string{"10.1.0.1:8000", "10.1.0.1:8001", "10.1.0.2:8000", "10.1.0.3:8000", "[fd00::7]:8000"}
	tests := []struct {
		name string
		hint any // nil: no hint
		want []string
	}{
		{name: "absent", want: all},
		{name: "list exact", hint: []string{"10.1.0.2:8000"}, want: []string{"10.1.0.2:8000"}},
		{name: "list exact port of a shared IP", hint: []string{"10.1.0.1:8001"}, want: []string{"10.1.0.1:8001"}},
		{name: "list IP only", hint: []string{"10.1.0.1"}, want: []string{"10.1.0.1:8000", "10.1.0.1:8001"}},
		{name: "list mixed", hint: []string{"10.1.0.3:8000", "10.1.0.2"}, want: []string{"10.1.0.2:8000", "10.1.0.3:8000"}},
		{name: "csv", hint: "10.1.0.2:8000, 10.1.0.3:8000", want: []string{"10.1.0.2:8000", "10.1.0.3:8000"}},
		{name: "csv IP only", hint: "10.1.0.1", want: []string{"10.1.0.1:8000", "10.1.0.1:8001"}},
		{name: "list empty", hint: []string{}},
		{name: "csv empty", hint: ""},
		{name: "unknown endpoint", hint: []string{"10.9.9.9:8000"}},
		{name: "known IP wrong port", hint: []string{"10.1.0.2:9999"}},
		{name: "IPv6 spelled otherwise", hint: []string{"[fd00::7]:8000"}, want: []string{"[fd00::7]:8000"}},
		{name: "IPv6 IP only, spelled otherwise", hint: "fd00:0000::0007", want: []string{"[fd00::7]:8000"}},
		{name: "IPv4-mapped", hint: []string{"[::ffff:10.1.0.2]:8000"}, want: []string{"10.1.0.2:8000"}},
	}
	h := start(t, setup{endpoints: subsetPool(), picker: randomPicker(10)})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := post("/v1/completions", completion("hi"))
			if tc.hint != nil {
				req.FilterMetadata = map[string]map[string]any{server.SubsetNamespace: {server.SubsetKey: tc.hint}}
			}
			d := h.exchange(t, req)
			if tc.want == nil {
				requireImmediate(t, d, http.StatusServiceUnavailable, "rejected-no-endpoints", "subset")
				return
			}
			if d.Immediate != nil {
				t.Fatalf("immediate response %d %q", d.Immediate.Status, d.Immediate.Body)
			}
			got := slices.Sorted(slices.Values(d.Endpoints))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNoReadyEndpoint checks the 503 answers, with a reason, when the pool
// cannot serve: datastore not synced yet, or synced and empty.
func TestNoReadyEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   setup
		req     extproc.Request
		bodyHas string
	}{
		{name: "not synced", setup: setup{unsynced: true}, req: post("/v1/completions", completion("hi")), bodyHas: "not synced"},
		{name: "not synced, bodyless", setup: setup{unsynced: true}, req: extproc.Request{Method: "GET", Path: "/v1/models"}, bodyHas: "not synced"},
		{name: "synced, empty", setup: setup{endpoints: []endpoint.Spec{}}, req: post("/v1/completions", completion("hi")), bodyHas: "no ready endpoints"},
		{name: "synced, empty, bodyless", setup: setup{endpoints: []endpoint.Spec{}}, req: extproc.Request{Method: "GET", Path: "/v1/models"}, bodyHas: "no ready endpoints"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, tc.setup)
			requireImmediate(t, h.exchange(t, tc.req), http.StatusServiceUnavailable, "rejected-no-endpoints", tc.bodyHas)
		})
	}
}
