package replicasync

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/fetchfail"
)

// post sends body to r's endpoint with the given Authorization header
// ("" for none) and returns the status and body of the answer.
func post(t *testing.T, r *replica, auth string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	return call(t, http.MethodPost, "http://"+r.addr()+batchesPath, auth, body)
}

// call sends one request, with the Authorization header auth when not
// empty, and returns the answer's status, body and headers.
func call(t *testing.T, method, url, auth string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := &http.Client{Timeout: waitFor}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), resp.Header
}

// TestServerRefuses: every way a request can be wrong gets its status
// and a message naming the problem, is counted, and applies nothing.
func TestServerRefuses(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	r := startReplica(t, eps, func(o *Options) { o.Token = []byte("s3cret"); o.MaxBatchBytes = 4096 })
	good := encode("peer", insertion("g", eps[0], 2))
	tests := []struct {
		name, auth, reason string
		body               io.Reader
		code               int
		want               string
	}{
		{name: "missing token", body: bytes.NewReader(good), code: 401, want: "missing token", reason: rejectBadToken},
		{name: "wrong token", auth: "Bearer guess", body: bytes.NewReader(good), code: 401, want: "wrong token", reason: rejectBadToken},
		{name: "not bearer", auth: "Basic s3cret", body: bytes.NewReader(good), code: 401, want: "wrong token", reason: rejectBadToken},
		{name: "too large", auth: "Bearer s3cret", body: bytes.NewReader(make([]byte, 5000)), code: 413, want: "maxBatchBytes", reason: rejectTooLarge},
		{name: "too large, chunked", auth: "Bearer s3cret", body: io.MultiReader(bytes.NewReader(make([]byte, 5000))), code: 413, want: "maxBatchBytes", reason: rejectTooLarge},
	}
	for _, m := range malformed {
		reason := rejectMalformed
		if m.name == "unknown version" {
			reason = rejectVersion
		}
		tests = append(tests, struct {
			name, auth, reason string
			body               io.Reader
			code               int
			want               string
		}{name: "malformed " + m.name, auth: "Bearer s3cret", body: bytes.NewReader(m.body), code: 400, want: m.want, reason: reason})
	}
	for _, tc := range tests {
		before := testutil.ToFloat64(r.node.m.rejected.WithLabelValues(tc.reason))
		code, msg, _ := post(t, r, tc.auth, tc.body)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d mentioning %q", tc.name, code, msg, tc.code, tc.want)
		}
		if got := testutil.ToFloat64(r.node.m.rejected.WithLabelValues(tc.reason)) - before; got != 1 {
			t.Errorf("%s: rejected_batches_total{reason=%q} rose by %v, want 1", tc.name, tc.reason, got)
		}
	}
	if s := r.state(); s.Received != 0 || r.prod.Index().Len() != 0 {
		t.Errorf("refused batches applied: received %d, index holds %d", s.Received, r.prod.Index().Len())
	}
	code, _, h := post(t, r, "Bearer s3cret", bytes.NewReader(good))
	if code != http.StatusNoContent || h.Get(headerReplicaID) != r.node.ID() {
		t.Errorf("good batch: %d, %s %q; want 204 and our ID", code, headerReplicaID, h.Get(headerReplicaID))
	}
	if s := r.state(); s.Applied != 1 {
		t.Errorf("good batch: applied %d, want 1", s.Applied)
	}
	resp, err := http.Get("http://" + r.addr() + batchesPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET: %d, Allow %q; want 405, POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestOwnBatchIgnored: a batch carrying the receiver's own ID is answered
// 200 with that ID and not applied.
func TestOwnBatchIgnored(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	r := startReplica(t, eps, nil)
	code, msg, h := post(t, r, "", bytes.NewReader(encode(r.node.ID(), insertion("own", eps[0], 1))))
	if code != http.StatusOK || h.Get(headerReplicaID) != r.node.ID() || !strings.Contains(msg, "own ID") {
		t.Errorf("own batch: %d %q, %s %q; want 200 and our ID", code, msg, headerReplicaID, h.Get(headerReplicaID))
	}
	if s := r.state(); s.Received != 0 {
		t.Errorf("own batch applied: %+v", s)
	}
}

// TestTokenBetweenNodes: nodes sharing a token deliver; a node without
// it is refused (401, nothing applied) and says why in its peer state.
func TestTokenBetweenNodes(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	secret := func(o *Options) { o.Token = []byte("s3cret") }
	a, b := startReplica(t, eps, secret), startReplica(t, eps, secret)
	stranger := startReplica(t, eps, func(o *Options) { o.Token = []byte("other") })
	a.node.SetPeers([]string{b.addr()})
	stranger.node.SetPeers([]string{b.addr()})
	// The greeting shows the wrong token before any traffic.
	eventually(t, "the stranger's greeting refused", func() bool { p, _ := stranger.peerState(b.addr()); return p.Failed == 1 })

	ins := insertion("t", eps[0], 3)
	a.node.Publish(ins)
	eventually(t, "delivery with the token", func() bool { return b.blocks(eps[0], ins.Hashes) == 3 })
	bad := insertion("stranger", eps[0], 3)
	stranger.node.Publish(bad)
	eventually(t, "the stranger refused", func() bool { p, _ := stranger.peerState(b.addr()); return p.Failed == 2 })
	p, _ := stranger.peerState(b.addr())
	if p.Failing != fetchfail.Status || !strings.Contains(p.LastError, "401") || !strings.Contains(p.LastError, "wrong token") {
		t.Errorf("stranger's peer state %+v, want failing http_status with 401 wrong token", p)
	}
	time.Sleep(20 * time.Millisecond)
	if got := b.blocks(eps[0], bad.Hashes); got != 0 || b.state().Applied != 1 {
		t.Errorf("refused insertion applied: %d blocks, %d applied", got, b.state().Applied)
	}
}
