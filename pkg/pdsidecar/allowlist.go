package pdsidecar

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// parseHostPort validates the values of header (the prefiller or KV cache
// source header): exactly one host:port with an IP or DNS host name and a
// port in 1..65535. It returns the canonical form (IPv6 in brackets, names
// lower-cased).
func parseHostPort(header string, values []string) (string, error) {
	if len(values) != 1 || strings.Contains(values[0], ",") {
		return "", fmt.Errorf("%s must name exactly one host:port, got %q", header, strings.Join(values, ","))
	}
	host, port, err := splitHostPort(strings.TrimSpace(values[0]))
	if err != nil {
		return "", fmt.Errorf("%s: %w", header, err)
	}
	return net.JoinHostPort(host, port), nil
}

func splitHostPort(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("%q: port %q is not in 1..65535", s, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String(), port, nil
	}
	if !validHostName(host) {
		return "", "", fmt.Errorf("%q: %q is neither an IP address nor a host name", s, host)
	}
	return strings.ToLower(host), port, nil
}

// validHostName accepts DNS names: dot-separated labels of letters,
// digits and inner hyphens.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// allowlist is Options.AllowedPrefillers parsed; empty allows all. It
// bounds prefillers and KV cache sources alike: both are pool endpoints
// a model server will be made to connect to.
type allowlist struct {
	prefixes  []netip.Prefix
	hostPorts map[string]bool // canonical host:port
}

func parseAllowlist(entries []string) (allowlist, error) {
	a := allowlist{hostPorts: map[string]bool{}}
	var errs []error
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil {
			a.prefixes = append(a.prefixes, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(e); err == nil {
			ip = ip.Unmap()
			a.prefixes = append(a.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		host, port, err := splitHostPort(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d]: %q is not a CIDR, an IP or host:port", i, e))
			continue
		}
		a.hostPorts[net.JoinHostPort(host, port)] = true
	}
	return a, errors.Join(errs...)
}

// permits reports whether the canonical hostPort may be a prefiller or
// a KV cache source.
func (a allowlist) permits(hostPort string) bool {
	if len(a.prefixes) == 0 && len(a.hostPorts) == 0 {
		return true
	}
	if a.hostPorts[hostPort] {
		return true
	}
	host, _, _ := net.SplitHostPort(hostPort)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
