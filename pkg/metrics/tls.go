package metrics

import (
	"crypto/tls"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
)

// clientTLS is the TLS configuration of https scrapes: verification per
// InsecureSkipVerify against CACertFile or the system roots, and the client
// key pair, if any, offered on every new connection (reread when rotated).
func clientTLS(o Options, log logr.Logger) (*tls.Config, error) {
	//nolint:gosec // upstream's default; configurable through InsecureSkipVerify and CACertFile.
	cfg := &tls.Config{InsecureSkipVerify: *o.InsecureSkipVerify}
	if o.CACertFile != "" {
		pool, err := certfile.CAPool(o.CACertFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if o.ClientCertFile != "" {
		kp, err := certfile.LoadKeyPair(o.ClientCertFile, o.ClientKeyFile, log.WithValues("use", "metrics client certificate"))
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = kp.GetClientCertificate
	}
	return cfg, nil
}
