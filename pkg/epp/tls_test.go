package epp

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/certfile/certtest"
	"github.com/openepp/openepp/pkg/extproc"
)

// TestServerTLSSettings runs the EPP with llm-d's TLS flags: ext_proc
// refuses a TLS 1.2 client under --tls-min-version=VersionTLS13, and
// /metrics, served over TLS from --metrics-cert-dir, admits only clients
// with a certificate from --metrics-client-ca-file.
func TestServerTLSSettings(t *testing.T) {
	t.Parallel()
	ca, clientCA := certtest.NewCA(t, "ca"), certtest.NewCA(t, "client-ca")
	dir := t.TempDir()
	ca.ServerFiles(t, dir, "epp")
	clientCAFile := certtest.Write(t, t.TempDir(), "client-ca.pem", clientCA.PEM)
	r := startEPP(t, 1, 0, "--secure-serving=true", "--cert-path", dir, "--tls-min-version", "VersionTLS13",
		"--metrics-cert-dir", dir, "--metrics-client-ca-file", clientCAFile, "--tracing=false")

	if lines := r.log.find(`"metricsTLS"="mutual, ` + dir + `"`); len(lines) != 1 || !strings.Contains(lines[0], `"grpcTLS"="`+dir+`"`) {
		t.Errorf("startup log %q: want the ext_proc certificate directory and mutual TLS on metrics", lines)
	}
	for name, maxVersion := range map[string]uint16{"TLS 1.2": tls.VersionTLS12, "TLS 1.3": tls.VersionTLS13} {
		if ok := routesOverTLS(t, r.addrs.GRPC, &tls.Config{RootCAs: ca.Pool(), MaxVersion: maxVersion}); ok != (maxVersion == tls.VersionTLS13) {
			t.Errorf("ext_proc over %s: routed %v, want only TLS 1.3 to route", name, ok)
		}
	}

	ccert, ckey := clientCA.Client(t, "prometheus")
	for name, certs := range map[string][]tls.Certificate{"without a client certificate": nil,
		"with a client certificate": {certtest.KeyPair(t, ccert, ckey)}} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}}
		resp, err := hc.Get("https://" + r.addrs.Metrics + "/metrics")
		page := ""
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
		}
		hc.CloseIdleConnections()
		if ok := err == nil && strings.Contains(page, "inference_extension_info"); ok != (certs != nil) {
			t.Errorf("/metrics %s: served %v (err %v), want only with a certificate", name, ok, err)
		}
	}
}

// TestTLSFlagsApply checks what --tls-min-version and --tls-cipher-suites
// set on a server config.
func TestTLSFlagsApply(t *testing.T) {
	t.Parallel()
	f := tlsFlags{minVersion: "VersionTLS13", cipherSuites: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}
	if errs := f.validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	var cfg tls.Config
	f.apply(&cfg)
	want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	if cfg.MinVersion != tls.VersionTLS13 || !slices.Equal(cfg.CipherSuites, want) {
		t.Errorf("min version %x, suites %x; want %x, %x", cfg.MinVersion, cfg.CipherSuites, tls.VersionTLS13, want)
	}
	var dflt tls.Config
	(&tlsFlags{}).apply(&dflt)
	if dflt.MinVersion != tls.VersionTLS12 || dflt.CipherSuites != nil {
		t.Errorf("defaults: min version %x, suites %x; want TLS 1.2 and Go's suites", dflt.MinVersion, dflt.CipherSuites)
	}
}

// TestCertReload rotates the ext_proc certificate under
// --enable-cert-reload: a new connection gets the new one.
func TestCertReload(t *testing.T) {
	t.Parallel()
	oldCA, newCA := certtest.NewCA(t, "old-ca"), certtest.NewCA(t, "new-ca")
	dir := t.TempDir()
	oldCA.ServerFiles(t, dir, "epp")
	r := startEPP(t, 1, 0, "--secure-serving=true", "--cert-path", dir, "--enable-cert-reload", "--tracing=false")
	routes := func(ca *certtest.CA) bool {
		return routesOverTLS(t, r.addrs.GRPC, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	}
	if !routes(oldCA) || routes(newCA) {
		t.Fatal("before rotation: want the old CA's certificate only")
	}
	newCA.ServerFiles(t, dir, "epp")
	if !routes(newCA) || routes(oldCA) {
		t.Error("after rotation: want the new CA's certificate only")
	}
}

// routesOverTLS reports whether a completion gets a routing decision from
// the EPP at addr over a new connection with cfg.
func routesOverTLS(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	c, err := extproc.Dial(context.Background(), addr, extproc.WithTLSConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
		Headers: map[string][]string{"content-type": {"application/json"}}, Body: []byte(`{"model":"m","prompt":"x"}`)})
	return err == nil && len(d.Endpoints) == 1
}
