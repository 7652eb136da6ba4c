package epp

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
)

// tlsFlags are llm-d's TLS settings of the EPP's own servers: the protocol
// floor and TLS 1.2 cipher suites of the ext_proc and metrics listeners,
// and TLS (optionally mutual) for the metrics listener.
type tlsFlags struct {
	minVersion, cipherSuites string
	metricsCertDir           string
	metricsClientCA          string
}

func (t *tlsFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&t.minVersion, "tls-min-version", "", "lowest TLS version the ext_proc and metrics servers accept: VersionTLS12 (default) or VersionTLS13")
	fs.StringVar(&t.cipherSuites, "tls-cipher-suites", "", "comma-separated TLS 1.2 cipher suites (IANA names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) for the ext_proc and metrics servers (default: Go's; TLS 1.3 suites are not configurable)")
	fs.StringVar(&t.metricsCertDir, "metrics-cert-dir", "", "serve /metrics over TLS with tls.crt and tls.key from this directory, reread when they change")
	fs.StringVar(&t.metricsClientCA, "metrics-client-ca-file", "", "with --metrics-cert-dir: accept only clients presenting a certificate from this PEM CA bundle (mTLS)")
}

// tlsVersions are the accepted --tls-min-version values (Kubernetes'
// names); older versions are refused outright.
var tlsVersions = map[string]uint16{"VersionTLS12": tls.VersionTLS12, "VersionTLS13": tls.VersionTLS13}

func (t *tlsFlags) validate() []error {
	var errs []error
	if _, err := t.version(); err != nil {
		errs = append(errs, err)
	}
	if _, err := t.suites(); err != nil {
		errs = append(errs, err)
	}
	if t.metricsClientCA != "" && t.metricsCertDir == "" {
		errs = append(errs, errors.New("--metrics-client-ca-file needs --metrics-cert-dir"))
	}
	return errs
}

func (t *tlsFlags) version() (uint16, error) {
	if t.minVersion == "" {
		return tls.VersionTLS12, nil
	}
	v, ok := tlsVersions[t.minVersion]
	if !ok {
		return 0, fmt.Errorf("--tls-min-version %q: want VersionTLS12 or VersionTLS13", t.minVersion)
	}
	return v, nil
}

// suites resolves --tls-cipher-suites against Go's secure suites; nil
// means Go's defaults.
func (t *tlsFlags) suites() ([]uint16, error) {
	if t.cipherSuites == "" {
		return nil, nil
	}
	var ids []uint16
	var unknown []string
	for _, name := range strings.Split(t.cipherSuites, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(tls.CipherSuites(), func(c *tls.CipherSuite) bool { return c.Name == name })
		if i < 0 {
			unknown = append(unknown, name)
			continue
		}
		ids = append(ids, tls.CipherSuites()[i].ID)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("--tls-cipher-suites: unknown or insecure %s (Go's secure suites are accepted)", strings.Join(unknown, ", "))
	}
	return ids, nil
}

// apply sets the protocol floor and cipher suites on a server config.
func (t *tlsFlags) apply(cfg *tls.Config) {
	cfg.MinVersion, _ = t.version() // validated with the flags
	cfg.CipherSuites, _ = t.suites()
}

// metricsTLS is the metrics listener's TLS config, nil when it serves
// plain HTTP.
func (t *tlsFlags) metricsTLS(log logr.Logger) (*tls.Config, error) {
	if t.metricsCertDir == "" {
		return nil, nil
	}
	kp, err := certfile.LoadKeyPair(filepath.Join(t.metricsCertDir, "tls.crt"), filepath.Join(t.metricsCertDir, "tls.key"),
		log.WithValues("use", "metrics server certificate"))
	if err != nil {
		return nil, fmt.Errorf("--metrics-cert-dir: %w", err)
	}
	cfg := &tls.Config{GetCertificate: kp.GetCertificate}
	if t.metricsClientCA != "" {
		pool, err := certfile.CAPool(t.metricsClientCA)
		if err != nil {
			return nil, fmt.Errorf("--metrics-client-ca-file: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	t.apply(cfg)
	return cfg, nil
}

// metricsMode says how the metrics listener serves, for the startup log.
func (t *tlsFlags) metricsMode() string {
	switch {
	case t.metricsCertDir == "":
		return "off"
	case t.metricsClientCA != "":
		return "mutual, " + t.metricsCertDir
	}
	return t.metricsCertDir
}

// extProcTLSMode says how the ext_proc listener serves, for the startup log.
func (f *Flags) extProcTLSMode() string {
	switch {
	case !f.SecureServing:
		return "off"
	case f.CertPath == "":
		return "self-signed"
	case f.EnableCertReload:
		return f.CertPath + " (reloaded)"
	}
	return f.CertPath
}
