package certfile

import (
	"errors"
	"fmt"
)

// ClientParams are the plugin parameters, in llm-d's names, that say how a
// data source reaches model servers: the scheme and, with https, how
// servers are verified and which certificate is presented. Data sources
// embed them in their own parameters.
type ClientParams struct {
	Scheme             string `json:"scheme,omitempty" doc:"http or https" default:"http"`
	InsecureSkipVerify *bool  `json:"insecureSkipVerify,omitempty" doc:"skip TLS verification with https (false when caCertPath is set)" default:"true"`
	CACertPath         string `json:"caCertPath,omitempty" doc:"PEM CA bundle that model servers' certificates are verified against, with https"`
	ClientCertPath     string `json:"clientCertPath,omitempty" doc:"PEM client certificate for servers that require one (mTLS), reread when it changes"`
	ClientKeyPath      string `json:"clientKeyPath,omitempty" doc:"PEM key of clientCertPath"`
}

// Problems lists every invalid parameter, named as in the config.
func (p ClientParams) Problems() []error {
	var errs []error
	if p.Scheme != "" && p.Scheme != "http" && p.Scheme != "https" {
		errs = append(errs, fmt.Errorf("scheme: must be http or https, got %q", p.Scheme))
	}
	if (p.ClientCertPath == "") != (p.ClientKeyPath == "") {
		errs = append(errs, errors.New("clientCertPath and clientKeyPath: set both or neither"))
	}
	return errs
}

// Client is the verification the parameters ask for: servers are not
// verified unless a CA bundle is given or insecureSkipVerify says so.
func (p ClientParams) Client() Client {
	c := Client{InsecureSkipVerify: p.CACertPath == "", CAFile: p.CACertPath, CertFile: p.ClientCertPath, KeyFile: p.ClientKeyPath}
	if p.InsecureSkipVerify != nil {
		c.InsecureSkipVerify = *p.InsecureSkipVerify
	}
	return c
}
