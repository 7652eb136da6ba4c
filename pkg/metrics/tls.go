package metrics

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// clientTLS is the TLS configuration of https scrapes: verification per
// InsecureSkipVerify against CACertFile or the system roots, and the client
// key pair, if any, offered on every new connection.
func clientTLS(o Options, log logr.Logger) (*tls.Config, error) {
	//nolint:gosec // upstream's default; configurable through InsecureSkipVerify and CACertFile.
	cfg := &tls.Config{InsecureSkipVerify: *o.InsecureSkipVerify}
	if o.CACertFile != "" {
		pem, err := os.ReadFile(o.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", o.CACertFile)
		}
		cfg.RootCAs = pool
	}
	if o.ClientCertFile != "" {
		kp := &keyPairFiles{certFile: o.ClientCertFile, keyFile: o.ClientKeyFile, log: log}
		if err := kp.reload(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = kp.get
	}
	return cfg, nil
}

// keyPairFiles serves a key pair read from files, rereading them when their
// modification times change (certificates rotated by cert-manager or a
// kubelet-mounted secret), so new connections present the new pair. A pair
// that fails to load is logged once per failure and the last good one kept.
type keyPairFiles struct {
	certFile, keyFile string
	log               logr.Logger

	mu              sync.Mutex
	pair            *tls.Certificate
	certMod, keyMod time.Time
	lastErr         string
}

// reload reads the pair if either file changed since the last read.
func (k *keyPairFiles) reload() error {
	cm, cerr := modTime(k.certFile)
	km, kerr := modTime(k.keyFile)
	if err := errors.Join(cerr, kerr); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pair != nil && cm.Equal(k.certMod) && km.Equal(k.keyMod) {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	k.pair, k.certMod, k.keyMod, k.lastErr = &pair, cm, km, ""
	return nil
}

// get implements tls.Config.GetClientCertificate.
func (k *keyPairFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	err := k.reload()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil && err.Error() != k.lastErr {
		k.lastErr = err.Error()
		k.log.Error(err, "cannot reload the metrics client certificate, keeping the previous one",
			"cert", k.certFile, "key", k.keyFile)
	}
	return k.pair, nil
}

func modTime(path string) (time.Time, error) {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}
