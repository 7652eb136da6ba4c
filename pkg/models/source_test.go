package models

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/certfile/certtest"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/scheduler"
)

// newSource builds a models-data-source with params (JSON) polling eps,
// fed to a models-data-extractor.
func newSource(t *testing.T, params string, eps ...*endpoint.Endpoint) *Source {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	h := &scheduler.Handle{Registerer: prometheus.NewRegistry(), Endpoints: func() []*endpoint.Endpoint { return eps }}
	p, err := SourceFactory("src", raw, h)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ExtractorFactory("x", nil, h)
	s := p.(*Source)
	if err := s.AddExtractor(x); err != nil {
		t.Fatal(err)
	}
	return s
}

// endpointAt is an endpoint for the server listening at hostPort.
func endpointAt(t *testing.T, name, hostPort string) *endpoint.Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return endpoint.New(endpoint.Spec{Name: name, Address: host, Port: p})
}

// rounds polls every endpoint of a source at once, as if an interval had
// passed each time, and waits for the answers.
type rounds struct {
	p   *poller
	now time.Time
}

func newRounds(s *Source) *rounds { return &rounds{p: s.newPoller(), now: time.Unix(0, 0)} }

func (r *rounds) run() {
	r.now = r.now.Add(time.Hour)
	r.p.dispatch(context.Background(), r.now)
	r.p.wg.Wait()
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestPollPublishesTheList(t *testing.T) {
	t.Parallel()
	var gotPath, gotAccept string
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAccept = r.URL.Path, r.Header.Get("Accept")
		_, _ = io.WriteString(w, vllmList)
	})
	ep := endpointAt(t, "e", srv.Listener.Addr().String())
	s := newSource(t, `{"path": "/custom/models"}`, ep)
	newRounds(s).run()
	ms := ep.Models()
	if ms == nil || len(ms.Items) != 2 {
		t.Fatalf("list %+v", ms)
	}
	if gotPath != "/custom/models" || gotAccept != "application/json" {
		t.Errorf("request: path %q accept %q", gotPath, gotAccept)
	}
	if a, _ := ms.Find("sql-lora"); a == nil || !a.Adapter() {
		t.Errorf("sql-lora: %+v", a)
	}
	if testutil.ToFloat64(s.tel.polls) != 1 {
		t.Errorf("polls = %v", testutil.ToFloat64(s.tel.polls))
	}
}

// TestFailedPollsKeepThenDropTheList checks every kind of bad answer:
// counted by reason, the previous list kept for two polls and dropped at
// the third, never blocking longer than the timeout.
func TestFailedPollsKeepThenDropTheList(t *testing.T) {
	t.Parallel()
	refused := func() string { // an address nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	tests := []struct {
		name   string
		h      http.HandlerFunc // nil: connection refused
		reason string
	}{
		{name: "not 200", reason: fetchfail.Status, h: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no such route", http.StatusNotFound)
		}},
		{name: "server error", reason: fetchfail.Status, h: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}},
		{name: "malformed JSON", reason: fetchfail.Parse, h: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"object":"list","data":[{"id":`)
		}},
		{name: "not a model list", reason: fetchfail.Parse, h: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		}},
		{name: "too large", reason: fetchfail.TooLarge, h: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"data":[`+strings.Repeat(" ", MaxListBytes)+`]}`)
		}},
		{name: "hangs", reason: fetchfail.Timeout, h: func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // the poll's timeout closes the connection
		}},
		{name: "connection refused", reason: fetchfail.Refused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := ""
			if tc.h == nil {
				addr = refused()
			} else {
				addr = serve(t, tc.h).Listener.Addr().String()
			}
			ep := endpointAt(t, "e", addr)
			timeout := "2s"
			if tc.reason == fetchfail.Timeout {
				timeout = "100ms"
			}
			s := newSource(t, `{"interval": "2s", "timeout": "`+timeout+`"}`, ep)
			if err := s.extractors[0].Extract(ep, []byte(vllmList), time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
			previous := ep.Models()
			r := newRounds(s)
			for i := 1; i <= dropAfter; i++ {
				start := time.Now()
				r.run()
				if took := time.Since(start); took > 3*time.Second {
					t.Fatalf("poll %d took %s with a %s timeout", i, took, timeout)
				}
				if got := testutil.ToFloat64(s.tel.errors[tc.reason]); got != float64(i) {
					t.Fatalf("after %d polls: poll_errors_total{reason=%q} = %v", i, tc.reason, got)
				}
				if kept := ep.Models() == previous; i < dropAfter != kept {
					t.Fatalf("after %d failed polls: list kept = %v", i, kept)
				}
			}
			if ep.Models() != nil {
				t.Error("the list survived three failed polls")
			}
		})
	}
}

// TestPollFailuresAreLoggedOnce: a run of failures logs when it starts,
// when its reason changes, when the list is dropped and when it ends, not
// on every poll.
func TestPollFailuresAreLoggedOnce(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		if code := int(status.Load()); code != http.StatusOK {
			w.WriteHeader(code)
			return
		}
		_, _ = io.WriteString(w, vllmList)
	})
	ep := endpointAt(t, "e", srv.Listener.Addr().String())
	s := newSource(t, "", ep)
	var lines []string
	s.log = funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 1})
	r := newRounds(s)
	r.run()
	status.Store(http.StatusServiceUnavailable)
	for range 5 {
		r.run()
	}
	status.Store(http.StatusOK)
	r.run()
	var msgs []string
	for _, l := range lines {
		_, msg, _ := strings.Cut(l, `"msg"="`)
		msg, _, _ = strings.Cut(msg, `"`)
		msgs = append(msgs, msg)
	}
	want := []string{"cannot read model list", "model list dropped", "model list readable again"}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("log (-want +got):\n%s\n%s", diff, strings.Join(lines, "\n"))
	}
}

func TestPollRecoversAndForgetsDepartedEndpoints(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, vllmList)
	})
	ep := endpointAt(t, "e", srv.Listener.Addr().String())
	s := newSource(t, `{"timeout": "1s"}`, ep)
	r := newRounds(s)
	r.run()
	if ep.Models() != nil || r.p.states["e"].failures != 1 {
		t.Fatalf("after a failure: list %v, failures %d", ep.Models(), r.p.states["e"].failures)
	}
	fail.Store(false)
	r.run()
	if ep.Models() == nil || r.p.states["e"].failures != 0 {
		t.Fatalf("after a success: list %v, failures %d", ep.Models(), r.p.states["e"].failures)
	}
	s.endpoints = func() []*endpoint.Endpoint { return nil }
	r.run()
	if len(r.p.states) != 0 {
		t.Errorf("state of a departed endpoint kept: %v", r.p.states)
	}
}

func TestStartPollsUntilCancelled(t *testing.T) {
	t.Parallel()
	polls := make(chan struct{}, 100)
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		polls <- struct{}{}
		_, _ = io.WriteString(w, vllmList)
	})
	ep := endpointAt(t, "e", srv.Listener.Addr().String())
	s := newSource(t, `{"interval": "20ms"}`, ep)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	for range 3 { // the first at once, then every interval
		select {
		case <-polls:
		case <-time.After(5 * time.Second):
			t.Fatal("no poll")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after cancel")
	}
	if ep.Models() == nil {
		t.Error("nothing published")
	}

	// Without extractors there is nothing to collect for: no polls.
	idle, err := SourceFactory("idle", nil, &scheduler.Handle{Endpoints: func() []*endpoint.Endpoint { return []*endpoint.Endpoint{ep} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for len(polls) > 0 {
		<-polls
	}
	if err := idle.(*Source).Start(ctx); err != nil || len(polls) != 0 {
		t.Errorf("idle source: %v, %d polls", err, len(polls))
	}
}

// TestNewAndHangingEndpoints: an endpoint that joins the pool is polled
// at once, not an interval later, and one that hangs holds up nobody
// else's polls.
func TestNewAndHangingEndpoints(t *testing.T) {
	t.Parallel()
	hung := serve(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	var polls atomic.Int64
	fine := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		polls.Add(1)
		_, _ = io.WriteString(w, vllmList)
	})
	slow, joined := endpointAt(t, "slow", hung.Listener.Addr().String()), endpointAt(t, "joined", fine.Listener.Addr().String())
	var pool atomic.Pointer[[]*endpoint.Endpoint]
	pool.Store(&[]*endpoint.Endpoint{slow})
	s := newSource(t, `{"interval": "10s", "timeout": "5s"}`)
	s.endpoints = func() []*endpoint.Endpoint { return *pool.Load() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	time.Sleep(50 * time.Millisecond) // the first dispatch, and slow's poll, have started
	pool.Store(&[]*endpoint.Endpoint{slow, joined})
	deadline := time.Now().Add(3 * time.Second) // far below the 10s interval and slow's 5s timeout
	for joined.Models() == nil {
		if time.Now().After(deadline) {
			t.Fatal("an endpoint that joined was not polled within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if slow.Models() != nil || polls.Load() != 1 {
		t.Errorf("slow has a list %v; joined polled %d times", slow.Models(), polls.Load())
	}
}

func TestSourceParams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	caFile := certtest.Write(t, dir, "ca.crt", ca.PEM)
	tests := []struct {
		params  string
		wantErr string
	}{
		{params: `{}`},
		{params: `{"scheme": "https", "path": "/v1/models", "insecureSkipVerify": false, "caCertPath": "` + caFile + `", "interval": "10s", "timeout": "3s"}`},
		{params: `{"port": 9000}`, wantErr: `unknown field "port"`},
		{params: `{"scheme": "grpc"}`, wantErr: `scheme: must be http or https, got "grpc"`},
		{params: `{"path": "v1/models"}`, wantErr: "path: must start with /"},
		{params: `{"interval": "0s"}`, wantErr: "interval: must be a positive duration"},
		{params: `{"timeout": "soon"}`, wantErr: "timeout: must be a positive duration"},
		{params: `{"clientCertPath": "/c.crt"}`, wantErr: "clientCertPath and clientKeyPath: set both or neither"},
		{params: `{"clientKeyPath": "/c.key"}`, wantErr: "clientCertPath and clientKeyPath: set both or neither"},
		{params: `{"scheme": "https", "caCertPath": "` + dir + `/missing.crt"}`, wantErr: "CA bundle"},
		{params: `{"scheme": "https", "clientCertPath": "` + dir + `/c.crt", "clientKeyPath": "` + dir + `/c.key"}`, wantErr: "TLS key pair"},
	}
	for _, tc := range tests {
		_, err := SourceFactory("s", json.RawMessage(tc.params), &scheduler.Handle{})
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.params, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tc.params, err, tc.wantErr)
		}
	}
	p, _ := SourceFactory("s", json.RawMessage(`{"interval": "500ms"}`), &scheduler.Handle{})
	if s := p.(*Source); s.Interval != 500*time.Millisecond || s.Timeout != 500*time.Millisecond {
		t.Errorf("interval %s timeout %s; the default timeout is at most the interval", s.Interval, s.Timeout)
	}
	p, _ = SourceFactory("s", nil, &scheduler.Handle{})
	if s := p.(*Source); s.Interval != DefaultInterval || s.Timeout != DefaultTimeout {
		t.Errorf("defaults: interval %s timeout %s", s.Interval, s.Timeout)
	}
}

// TestPollOverMutualTLS polls a server that verifies the client's
// certificate, verifying the server against caCertPath.
func TestPollOverMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, clientCA := certtest.NewCA(t, "server-ca"), certtest.NewCA(t, "client-ca")
	certPEM, keyPEM := serverCA.Server(t, "model-server")
	clients := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clients <- r.TLS.PeerCertificates[0].Subject.CommonName
		_, _ = io.WriteString(w, vllmList)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certtest.KeyPair(t, certPEM, keyPEM)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool()}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ep := endpointAt(t, "e", srv.Listener.Addr().String())
	caFile := certtest.Write(t, dir, "ca.crt", serverCA.PEM)
	certFile, keyFile := clientCA.ClientFiles(t, dir, "epp")
	s := newSource(t, fmt.Sprintf(`{"scheme": "https", "caCertPath": %q, "clientCertPath": %q, "clientKeyPath": %q}`, caFile, certFile, keyFile), ep)
	newRounds(s).run()
	if ep.Models() == nil {
		t.Fatalf("nothing collected over mTLS; errors: %v", testutil.ToFloat64(s.tel.errors[fetchfail.Connect]))
	}
	if got := <-clients; got != "epp" {
		t.Errorf("client certificate %q", got)
	}

	// Verification on: a server whose CA is not trusted is refused.
	other := newSource(t, fmt.Sprintf(`{"scheme": "https", "caCertPath": %q, "clientCertPath": %q, "clientKeyPath": %q}`,
		certtest.Write(t, dir, "other.crt", clientCA.PEM), certFile, keyFile), endpointAt(t, "f", srv.Listener.Addr().String()))
	newRounds(other).run()
	if testutil.ToFloat64(other.tel.errors[fetchfail.Connect]) != 1 {
		t.Error("an untrusted server certificate was accepted")
	}
}
