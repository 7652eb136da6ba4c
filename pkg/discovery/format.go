package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/endpoint"
)

// FileEntry is one endpoint in an endpoints file. The format is OpenEPP's
// (--endpoints-file) and llm-d's (file-discovery) at once: llm-d writes the
// port as a string and the metrics address as metricsHost.
type FileEntry struct {
	// Name defaults to "address:port".
	Name string `json:"name,omitempty"`
	// Namespace is optional; file-discovery defaults it to "default" as
	// llm-d does (session tokens carry "namespace/name").
	Namespace string `json:"namespace,omitempty"`
	Address   string `json:"address"`
	// Port is a number or a numeric string. It is kept raw so that a bad
	// value is reported with its entry instead of ending the decode.
	Port        json.RawMessage `json:"port"`
	MetricsPort int             `json:"metricsPort,omitempty"`
	// MetricsHost is llm-d's "host:port" of the metrics page; its host must
	// be the address, since endpoints are scraped on their own address.
	MetricsHost string `json:"metricsHost,omitempty"`
	// Node is the host the endpoint runs on, which topology-aware plugins
	// compare (e.g. a Kubernetes node name). An OpenEPP addition: llm-d's
	// file-discovery has no such key. Kept exactly as written.
	Node string `json:"node,omitempty"`
	// NodeAddress is that host's IP, where node-level exporters listen
	// (dcgm-data-source's useNodeAddress); an OpenEPP addition too.
	NodeAddress string            `json:"nodeAddress,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Pool groups endpoints into pools, as InferencePools do: an EPP whose
	// endpoints name several pools routes each request among one pool's
	// (docs/deploy.md, "Several pools"). An OpenEPP addition.
	Pool string `json:"pool,omitempty"`
}

// knownFields lists FileEntry's keys for the unknown-field message.
const knownFields = "name, namespace, address, port, metricsPort, metricsHost, node, nodeAddress, labels, pool"

// LoadFile reads and validates an endpoints file, reporting every problem.
// Entries without a namespace keep an empty one.
func LoadFile(path string) ([]endpoint.Spec, error) { return loadFile(path, "") }

// loadFile is LoadFile giving entries without a namespace namespace.
func loadFile(path, namespace string) ([]endpoint.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints file: %w", err)
	}
	return decodeFile(path, data, namespace)
}

// decodeFile is loadFile on the file's contents; path names the file in
// errors.
func decodeFile(path string, data []byte, namespace string) ([]endpoint.Spec, error) {
	raws, err := splitEntries(data)
	if err != nil {
		return nil, fmt.Errorf("parse endpoints file %q: %w", path, err)
	}
	specs := make([]endpoint.Spec, 0, len(raws))
	var errs []error
	for i, raw := range raws {
		spec, err := decodeEntry(raw, namespace)
		if err != nil {
			if spec.Name != "" {
				err = fmt.Errorf("endpoints[%d] (%s): %w", i, spec.Name, err)
			} else {
				err = fmt.Errorf("endpoints[%d]: %w", i, err)
			}
			errs = append(errs, err)
			continue
		}
		specs = append(specs, spec)
	}
	if err := errors.Join(append(errs, unique(specs), poolsEverywhere(specs))...); err != nil {
		return nil, fmt.Errorf("endpoints file %q: %w", path, err)
	}
	return specs, nil
}

// poolsEverywhere refuses a file in which some entries name a pool and
// others none: an endpoint outside every pool could never be routed to
// once there are pools.
func poolsEverywhere(specs []endpoint.Spec) error {
	var with, without []string
	for _, s := range specs {
		if s.Pool == "" {
			without = append(without, s.Name)
		} else {
			with = append(with, s.Name)
		}
	}
	if len(with) == 0 || len(without) == 0 {
		return nil
	}
	return fmt.Errorf("entries %s name no pool while others do: give every entry a pool, or none", strings.Join(without, ", "))
}

// splitEntries parses the YAML and returns each entry undecoded, from
// either a bare list or {endpoints: [...]}, chosen by the document's shape
// so the error names the real problem.
func splitEntries(data []byte) ([]json.RawMessage, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	js = bytes.TrimSpace(js)
	var entries []json.RawMessage
	switch {
	case len(js) == 0 || string(js) == "null":
		return nil, nil
	case js[0] == '[':
		err = json.Unmarshal(js, &entries)
	case js[0] == '{':
		var doc struct {
			Endpoints []json.RawMessage `json:"endpoints"`
		}
		err = strictJSON(js, &doc)
		entries = doc.Endpoints
	default:
		return nil, errors.New("want a list of {name, address, port, labels} or {endpoints: [...]}")
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return nil, fmt.Errorf("endpoints: want a list, got %s", te.Value)
	case err != nil:
		return nil, clearJSONError(err, "endpoints")
	}
	return entries, nil
}

// decodeEntry strictly decodes one entry and turns it into a valid spec.
// On error the spec carries the entry's name, when it has one, for the
// message.
func decodeEntry(raw json.RawMessage, namespace string) (endpoint.Spec, error) {
	var e FileEntry
	if err := strictJSON(raw, &e); err != nil {
		return endpoint.Spec{}, clearJSONError(err, knownFields)
	}
	spec := endpoint.Spec{Name: e.Name, Namespace: e.Namespace, Pool: e.Pool, Node: e.Node, NodeAddress: e.NodeAddress, Address: e.Address,
		MetricsPort: e.MetricsPort, Labels: e.Labels}
	if spec.Namespace == "" {
		spec.Namespace = namespace
	}
	port, portErr := parsePort(e.Port)
	if portErr == nil {
		spec.Port = port
		if spec.Name == "" {
			spec.Name = net.JoinHostPort(e.Address, strconv.Itoa(port))
		}
		portErr = checkPort(port)
	}
	return spec, joinProblems(checkAddress(e.Address), portErr, checkMetricsPort(e.MetricsPort), applyMetricsHost(&spec, e.MetricsHost),
		checkNodeAddress(e.NodeAddress))
}

// joinProblems puts one entry's problems on one line, so that each line of
// the file's error names its entry.
func joinProblems(errs ...error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// parsePort reads a port written as a number (8000) or, as llm-d writes
// it, a numeric string ("8000"). The range is checked by checkPort.
func parsePort(raw json.RawMessage) (int, error) {
	text := strings.TrimSpace(string(raw))
	if text == "" || text == "null" {
		return 0, errors.New("port is required")
	}
	if s, err := strconv.Unquote(text); err == nil && text[0] == '"' {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
		return n, nil
	}
	n, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("port %s is not a whole number or a numeric string", text)
	}
	return n, nil
}

// applyMetricsHost sets spec.MetricsPort from llm-d's metricsHost. A spec
// has no metrics address of its own (endpoints are scraped on Address), so
// a metricsHost naming another host is refused rather than ignored.
func applyMetricsHost(spec *endpoint.Spec, hostPort string) error {
	if hostPort == "" {
		return nil
	}
	host, portText, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("metricsHost %q: want host:port: %w", hostPort, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("metricsHost %q: port %q is not a number in 1-65535", hostPort, portText)
	}
	if !sameHost(host, spec.Address) {
		return fmt.Errorf("metricsHost %q: host %q is not the address %q; OpenEPP scrapes an endpoint on its own address, "+
			"so only the port may differ", hostPort, host, spec.Address)
	}
	if spec.MetricsPort != 0 && spec.MetricsPort != port {
		return fmt.Errorf("metricsHost %q and metricsPort %d disagree; give one", hostPort, spec.MetricsPort)
	}
	spec.MetricsPort = port
	return nil
}

// sameHost compares two hosts, as IP addresses when both are ("::1" and
// "0:0::1" are the same host).
func sameHost(a, b string) bool {
	ipA, ipB := net.ParseIP(a), net.ParseIP(b)
	if ipA != nil && ipB != nil {
		return ipA.Equal(ipB)
	}
	return a == b
}

func strictJSON(data []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}

// clearJSONError rewrites encoding/json's messages in the file's terms;
// known lists the keys valid where the error was found.
func clearJSONError(err error, known string) error {
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s (known: %s)", field, known)
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return fmt.Errorf("want an object of %s, got %s", known, te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("%s: want %s, got %s", te.Field, te.Type, te.Value)
	}
	return err
}

// checkNodeAddress accepts an empty node address (unknown) or an IP.
func checkNodeAddress(address string) error {
	if address != "" && net.ParseIP(address) == nil {
		return fmt.Errorf("nodeAddress %q is not an IP address", address)
	}
	return nil
}
