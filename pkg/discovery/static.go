// Package discovery provides the endpoint sources for running without
// Kubernetes: a fixed list from a flag, a YAML file reloaded on change, and
// llm-d's file-discovery plugin, which reads the same file format.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Source names under which these sources own endpoints in the datastore.
const (
	StaticSource = "static"
	FileSource   = "file"
)

// Store is what the sources need from the datastore.
type Store interface {
	Replace(source string, specs []endpoint.Spec)
}

// ParseList parses "ip:port,ip:port" (as given to --endpoints) into specs
// named after their address.
func ParseList(list string) ([]endpoint.Spec, error) {
	var specs []endpoint.Spec
	var errs []error
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		host, port, err := net.SplitHostPort(item)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: want ip:port: %w", item, err))
			continue
		}
		spec := endpoint.Spec{Name: item, Address: host}
		spec.Port, _ = strconv.Atoi(port)
		if err := validate(spec); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: %w", item, err))
			continue
		}
		specs = append(specs, spec)
	}
	if err := errors.Join(append(errs, unique(specs))...); err != nil {
		return nil, err
	}
	return specs, nil
}

// validate reports every problem of a spec.
func validate(s endpoint.Spec) error {
	return joinProblems(checkAddress(s.Address), checkPort(s.Port), checkMetricsPort(s.MetricsPort))
}

func checkAddress(address string) error {
	if net.ParseIP(address) == nil {
		return fmt.Errorf("address %q is not an IP address (the proxy dials it directly)", address)
	}
	return nil
}

func checkPort(port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("port %d out of range 1-65535", port)
	}
	return nil
}

// checkMetricsPort allows 0, which means the serving port.
func checkMetricsPort(port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("metricsPort %d out of range 1-65535", port)
	}
	return nil
}

func unique(specs []endpoint.Spec) error {
	seen := map[string]bool{}
	var errs []error
	for _, s := range specs {
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("endpoint name %q is used twice", s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// Static publishes a fixed list of endpoints once and keeps it.
type Static struct {
	store Store
	specs []endpoint.Spec
}

// NewStatic returns a source for specs.
func NewStatic(store Store, specs []endpoint.Spec) *Static {
	return &Static{store: store, specs: specs}
}

// Start publishes the endpoints and waits for ctx to end.
func (s *Static) Start(ctx context.Context) error {
	s.store.Replace(StaticSource, s.specs)
	<-ctx.Done()
	return nil
}
