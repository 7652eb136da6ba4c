package server

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/endpoint"
)

// FuzzHeaderMap checks headerMap on any headers Envoy could send, one per
// line as "key\traw_value\tvalue": names are lower-cased; raw_value wins
// over value when set; a repeated header's values are joined with ","
// in order, except pseudo-headers, where the last wins. firstHeader then
// returns the first non-empty of the names asked for.
func FuzzHeaderMap(f *testing.F) {
	for _, s := range []string{
		":method\tPOST\t\n:path\t/v1/completions\t\ncontent-type\t\tapplication/json\nX-Request-ID\tr1\t",
		"x-gateway-model-name-rewrite\t\tb\nx-llm-d-model-name-rewrite\ta\t",
		"accept\ta\t\nAccept\t\tb\nACCEPT\tc\td\n:authority\th1\t\n:authority\th2\t",
		"x-bin\t\xff\xfe\t\nX-\xc3\x84\tv\t\n\t\t\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, spec []byte) {
		var hm corev3.HeaderMap
		want := map[string]string{}
		for line := range bytes.SplitSeq(spec, []byte("\n")) {
			key, rest, _ := bytes.Cut(line, []byte("\t"))
			raw, value, _ := bytes.Cut(rest, []byte("\t"))
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: string(key), RawValue: raw, Value: string(value)})
			k, v := strings.ToLower(string(key)), string(raw)
			if v == "" {
				v = string(value)
			}
			if prev, ok := want[k]; ok && !strings.HasPrefix(k, ":") {
				v = prev + "," + v
			}
			want[k] = v
		}
		got := headerMap(&hm)
		if len(got) != len(want) {
			t.Fatalf("headerMap has %d names, want %d", len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("header %q = %q, want %q", k, got[k], v)
			}
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		})
		names = append(names, "absent")
		first := firstHeader(got, names)
		for _, n := range names {
			if got[n] != "" {
				if first != got[n] {
					t.Fatalf("firstHeader = %q, want %q (of %q)", first, got[n], n)
				}
				return
			}
		}
		if first != "" {
			t.Fatalf("firstHeader = %q with every value empty", first)
		}
	})
}

// FuzzSubsetHint checks the proxy's subset hint, given as one
// comma-separated string or as a list: it never panics; an endpoint whose
// exact ip:port, or bare IP, is an entry is admitted; and an admitted
// endpoint is one the hint names.
func FuzzSubsetHint(f *testing.F) {
	for _, s := range []string{"10.0.0.1:8000", "10.0.0.1:8000, 10.0.0.2", "[::1]:80,[::2],::3", " , ,", "10.0.0.1:99999,host:80,:80,[::1"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, hint string, asList bool) {
		value := structpb.NewStringValue(hint)
		if asList {
			var items []*structpb.Value
			for item := range strings.SplitSeq(hint, ",") {
				items = append(items, structpb.NewStringValue(item))
			}
			value = structpb.NewListValue(&structpb.ListValue{Values: items})
		}
		md := map[string]*structpb.Struct{SubsetNamespace: {Fields: map[string]*structpb.Value{SubsetKey: value}}}
		s := parseSubset(md)
		named := hintEndpoints(hint)
		others := []*endpoint.Endpoint{endpoint.New(endpoint.Spec{Name: "unnamed", Address: "192.0.2.77", Port: 7})}
		all := append(slices.Clone(named), others...)
		got := s.filter(all)
		for _, e := range named {
			if !slices.Contains(got, e) {
				t.Fatalf("hint %q does not admit %s", hint, e.HostPort)
			}
		}
		for _, e := range got {
			if !strings.Contains(hint, e.Address) {
				t.Fatalf("hint %q admits %s, which it does not name", hint, e.HostPort)
			}
		}
	})
}

// hintEndpoints are the endpoints the entries of hint name exactly: an
// ip:port, or a bare IP (on a port no entry names).
func hintEndpoints(hint string) []*endpoint.Endpoint {
	var eps []*endpoint.Endpoint
	for entry := range strings.SplitSeq(hint, ",") {
		entry = strings.TrimSpace(entry)
		host, port, err := net.SplitHostPort(entry)
		p, perr := strconv.Atoi(port)
		switch {
		case err == nil && perr == nil && net.ParseIP(host) != nil && strconv.Itoa(p) == port:
			eps = append(eps, endpoint.New(endpoint.Spec{Name: entry, Address: host, Port: p}))
		case err != nil && net.ParseIP(strings.Trim(entry, "[]")) != nil:
			eps = append(eps, endpoint.New(endpoint.Spec{Name: entry, Address: strings.Trim(entry, "[]"), Port: 1}))
		}
	}
	return eps
}
