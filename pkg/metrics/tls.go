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
	c := certfile.Client{InsecureSkipVerify: *o.InsecureSkipVerify, CAFile: o.CACertFile,
		CertFile: o.ClientCertFile, KeyFile: o.ClientKeyFile}
	return c.TLSConfig(log.WithValues("use", "metrics client certificate"))
}
