package metrics

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/certfile/certtest"
)

// mtlsServer serves the vLLM page over TLS with a certificate from
// serverCA, requiring a client certificate from clientCA, and records each
// connection's client name.
type mtlsServer struct {
	*httptest.Server
	mu      sync.Mutex
	clients []string
}

func newMTLSServer(t *testing.T, serverCA, clientCA *certtest.CA) *mtlsServer {
	t.Helper()
	certPEM, keyPEM := serverCA.Server(t, "model-server")
	pair := certtest.KeyPair(t, certPEM, keyPEM)
	page := readPage(t, "vllm.txt")
	ms := &mtlsServer{}
	ms.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms.mu.Lock()
		ms.clients = append(ms.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		ms.mu.Unlock()
		_, _ = w.Write(page)
	}))
	ms.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool()}
	ms.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	ms.StartTLS()
	t.Cleanup(ms.Close)
	return ms
}

func (ms *mtlsServer) lastClient() string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.clients) == 0 {
		return ""
	}
	return ms.clients[len(ms.clients)-1]
}

// TestScrapeMutualTLS scrapes a server that requires a client certificate:
// verified against the configured CA, with the configured pair, which is
// reread for the next connection when its files change; without the pair,
// or against another CA, the scrape fails and says so.
func TestScrapeMutualTLS(t *testing.T) {
	t.Parallel()
	serverCA, clientCA, otherCA := certtest.NewCA(t, "server-ca"), certtest.NewCA(t, "client-ca"), certtest.NewCA(t, "other-ca")
	ms := newMTLSServer(t, serverCA, clientCA)
	dir := t.TempDir()
	caFile := certtest.Write(t, dir, "ca.pem", serverCA.PEM)
	otherCAFile := certtest.Write(t, dir, "other-ca.pem", otherCA.PEM)
	certFile, keyFile := clientCA.ClientFiles(t, dir, "epp-1")

	scrape := func(t *testing.T, o Options) (*target, *recorder) {
		t.Helper()
		rec := &recorder{}
		o.Scheme, o.Log = "https", rec.logger()
		st := newStoreWith(specFor(t, "a", ms.Listener.Addr().String(), nil))
		s, err := New(st, o)
		if err != nil {
			t.Fatal(err)
		}
		tg := s.newTarget(st.Snapshot()[0])
		t.Cleanup(tg.conn.close)
		tg.poll(context.Background())
		return tg, rec
	}

	t.Run("verified, with the client pair, rotated", func(t *testing.T) {
		tg, _ := scrape(t, Options{CACertFile: caFile, ClientCertFile: certFile, ClientKeyFile: keyFile})
		if m := tg.ep.Metrics(); tg.failing || m.WaitingQueueSize != 3 || ms.lastClient() != "epp-1" {
			t.Fatalf("failing=%v waiting=%d client=%q, want a good scrape as epp-1", tg.failing, m.WaitingQueueSize, ms.lastClient())
		}
		clientCA.ClientFiles(t, dir, "epp-2")
		tg.poll(context.Background())
		if got := ms.lastClient(); got != "epp-1" {
			t.Errorf("kept-alive connection presented %q, want still epp-1", got)
		}
		tg.conn.close() // the next scrape dials: a new handshake
		tg.poll(context.Background())
		if got := ms.lastClient(); tg.failing || got != "epp-2" {
			t.Errorf("after rotation: failing=%v client=%q, want epp-2", tg.failing, got)
		}
	})
	for name, o := range map[string]Options{
		"no client certificate":  {CACertFile: caFile},
		"server not from the CA": {CACertFile: otherCAFile, ClientCertFile: certFile, ClientKeyFile: keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			tg, rec := scrape(t, o)
			if !tg.failing || rec.count("metrics scrape failing", "") != 1 {
				t.Errorf("failing=%v, logs %d: want the scrape to fail and be logged once", tg.failing, rec.count("metrics scrape failing", ""))
			}
		})
	}
}

// TestDataSourceLLMDParams decodes llm-d's additions to metrics-data-source
// and checks what they set, and that bad values are refused at load time.
func TestDataSourceLLMDParams(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "ca")
	dir := t.TempDir()
	caFile := certtest.Write(t, dir, "ca.pem", ca.PEM)
	certFile, keyFile := ca.ClientFiles(t, dir, "epp")
	raw, _ := json.Marshal(map[string]any{"scheme": "https", "port": 8200, "interval": "100ms",
		"caCertPath": caFile, "clientCertPath": certFile, "clientKeyPath": keyFile})
	p, err := DataSourceFactory("m", raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	var o Options
	p.(Applier).ApplyTo(&o)
	type set struct {
		Scheme                            string
		Port                              int
		Interval                          time.Duration
		CACertFile, ClientCert, ClientKey string
	}
	want := set{"https", 8200, 100 * time.Millisecond, caFile, certFile, keyFile}
	got := set{o.Scheme, o.Port, o.Interval, o.CACertFile, o.ClientCertFile, o.ClientKeyFile}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("options mismatch (-want +got):\n%s", diff)
	}
	s, err := New(newStoreWith(), o)
	if err != nil {
		t.Fatal(err)
	}
	if s.tlsConfig.InsecureSkipVerify || s.tlsConfig.RootCAs == nil || s.tlsConfig.GetClientCertificate == nil {
		t.Errorf("TLS config %+v: want verification against the CA and a client certificate", s.tlsConfig)
	}

	for _, bad := range []struct{ params, want string }{
		{`{"port": 70000}`, "port"},
		{`{"interval": "-1s"}`, "interval"},
		{`{"interval": "soon"}`, "interval"},
		{`{"clientCertPath": "x.crt"}`, "clientCertPath and clientKeyPath"},
	} {
		if _, err := DataSourceFactory("m", json.RawMessage(bad.params), nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %s", bad.params, err, bad.want)
		}
	}
	for name, o := range map[string]Options{
		"missing CA file":          {Scheme: "https", CACertFile: filepath.Join(dir, "none.pem")},
		"CA file without PEM":      {Scheme: "https", CACertFile: keyFile},
		"client pair mismatched":   {Scheme: "https", ClientCertFile: certFile, ClientKeyFile: caFile},
		"certificates over http":   {CACertFile: caFile},
		"client certificate alone": {Scheme: "https", ClientCertFile: certFile},
	} {
		if _, err := New(newStoreWith(), o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

// TestMetricsPortOverride scrapes an endpoint whose own port has no metrics
// page at the port Options.Port names.
func TestMetricsPortOverride(t *testing.T) {
	t.Parallel()
	ms := newModelServer(t, readPage(t, "vllm.txt"))
	_, port, _ := net.SplitHostPort(ms.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	st := newStoreWith(specFor(t, "a", refusedAddr(t), nil))
	s, err := New(st, Options{Port: p})
	if err != nil {
		t.Fatal(err)
	}
	tg := s.newTarget(st.Snapshot()[0])
	t.Cleanup(tg.conn.close)
	tg.poll(context.Background())
	if tg.failing || tg.ep.Metrics().WaitingQueueSize != 3 {
		t.Errorf("failing=%v, metrics %+v: want the page at port %d", tg.failing, tg.ep.Metrics(), p)
	}
}
