package extproc

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Names of the endpoint-picker protocol (GIE proposal 004).
const (
	// DestinationHeader carries the chosen "ip:port[,ip:port...]" list; Envoy's
	// ORIGINAL_DST cluster reads it. The same key holds the value in the
	// LBNamespace dynamic metadata.
	DestinationHeader = "x-gateway-destination-endpoint"
	// ServedKey is the LBNamespace filter-metadata key through which the proxy
	// tells the EPP, on response messages, which endpoint actually served.
	ServedKey = "x-gateway-destination-endpoint-served"
	// LBNamespace is the metadata namespace of the destination and served keys.
	LBNamespace = "envoy.lb"
	// SubsetNamespace is the filter-metadata namespace of the subset hint.
	SubsetNamespace = "envoy.lb.subset_hint"
	// SubsetKey holds the list of "ip:port" the EPP may choose from.
	SubsetKey = "x-gateway-destination-endpoint-subset"
)

// Decision is the outcome of the request phase: what Envoy would do next.
type Decision struct {
	// Immediate is set when the processor answered with an immediate_response;
	// the other fields then describe the state reached before it.
	Immediate *ImmediateResponse

	// Method, Path, Authority and Scheme are the pseudo headers Envoy would
	// send upstream (only :path may be changed by the processor).
	Method, Path, Authority, Scheme string
	// Headers are the regular request headers Envoy would send upstream after
	// the processor's mutations. content-length is absent: Envoy removes it in
	// FULL_DUPLEX_STREAMED mode and sends the body chunked.
	Headers http.Header
	// SetHeaders and RemovedHeaders list the mutations that were applied, in
	// arrival order; Ignored lists the ones (and other fields) Envoy ignores.
	SetHeaders     []HeaderValue
	RemovedHeaders []string
	Ignored        []string
	// ClearRouteCache is true when a header reply carrying a header mutation
	// asked Envoy to recompute the route.
	ClearRouteCache bool
	// DynamicMetadata is every namespace of dynamic_metadata received in the
	// request phase, merged key by key in arrival order.
	DynamicMetadata map[string]map[string]any

	// DestinationHeader is the final value of the x-gateway-destination-endpoint
	// request header, and Endpoints its parsed "ip:port" list (what the
	// ORIGINAL_DST cluster uses, the first being the primary).
	DestinationHeader string
	Endpoints         []string
	// LBDestination is the envoy.lb dynamic metadata value for the same key.
	LBDestination string

	// Body is the request body Envoy would send upstream: the concatenation
	// of the streamed_response chunks.
	Body []byte
	// Trailers are the request trailers after mutation, when trailers were sent.
	Trailers http.Header
}

// ParseEndpoints parses a comma-separated "ip:port" list (IPv6 in brackets),
// tolerating spaces around entries, and returns the entries normalized.
func ParseEndpoints(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("endpoint list is empty")
	}
	parts := strings.Split(v, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("endpoint %q is not ip:port: %w", strings.TrimSpace(p), err)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("endpoint %q has port 0", strings.TrimSpace(p))
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// resolveDestination validates the destination header against the envoy.lb
// metadata and fills the destination fields of d.
func resolveDestination(d *Decision, headers *headerMap) error {
	values := headers.get(DestinationHeader)
	if len(values) > 1 {
		return fmt.Errorf("%s has %d values, Envoy's ORIGINAL_DST reads a single one", DestinationHeader, len(values))
	}
	var fromHeader, fromMeta []string
	if len(values) == 1 {
		eps, err := ParseEndpoints(values[0])
		if err != nil {
			return fmt.Errorf("header %s: %w", DestinationHeader, err)
		}
		d.DestinationHeader, d.Endpoints, fromHeader = values[0], eps, eps
	}
	if raw, ok := d.DynamicMetadata[LBNamespace][DestinationHeader]; ok {
		s, isString := raw.(string)
		if !isString {
			return fmt.Errorf("dynamic metadata %s.%s is %T, want a string", LBNamespace, DestinationHeader, raw)
		}
		eps, err := ParseEndpoints(s)
		if err != nil {
			return fmt.Errorf("dynamic metadata %s.%s: %w", LBNamespace, DestinationHeader, err)
		}
		d.LBDestination, fromMeta = s, eps
	}
	if fromHeader != nil && fromMeta != nil && !slices.Equal(fromHeader, fromMeta) {
		return fmt.Errorf("header %s %q differs from dynamic metadata %s.%s %q",
			DestinationHeader, d.DestinationHeader, LBNamespace, DestinationHeader, d.LBDestination)
	}
	return nil
}

// metadataContext converts filter metadata given as Go maps to the
// metadata_context Envoy attaches to every ProcessingRequest.
func metadataContext(fm map[string]map[string]any) (*corev3.Metadata, error) {
	if len(fm) == 0 {
		return nil, nil
	}
	out := &corev3.Metadata{FilterMetadata: make(map[string]*structpb.Struct, len(fm))}
	for ns, fields := range fm {
		norm := make(map[string]any, len(fields))
		for k, v := range fields {
			norm[k] = normalize(v)
		}
		st, err := structpb.NewStruct(norm)
		if err != nil {
			return nil, fmt.Errorf("filter metadata %q: %w", ns, err)
		}
		out.FilterMetadata[ns] = st
	}
	return out, nil
}

// normalize turns the typed slices and maps callers naturally write into the
// []any / map[string]any shapes structpb accepts; structpb reports the rest.
func normalize(v any) any {
	switch t := v.(type) {
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(t))
		for k, s := range t {
			out[k] = s
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = normalize(e)
		}
		return out
	}
	return v
}

// mergeMetadata merges dynamic_metadata into dst the way Envoy's stream info
// merges a namespace struct: key by key, later values win.
func mergeMetadata(dst map[string]map[string]any, src *structpb.Struct, log *mutationLog) {
	for ns, v := range src.GetFields() {
		sv := v.GetStructValue()
		if sv == nil {
			log.ignore("dynamic_metadata namespace %q is not a struct", ns)
			continue
		}
		m := dst[ns]
		if m == nil {
			m = make(map[string]any, len(sv.GetFields()))
			dst[ns] = m
		}
		for k, fv := range sv.GetFields() {
			m[k] = fv.AsInterface()
		}
	}
}

// mergeFilterMetadata overlays extra namespaces on base (used for response
// messages, which carry the request's filter metadata too).
func mergeFilterMetadata(base, extra map[string]map[string]any) map[string]map[string]any {
	out := make(map[string]map[string]any, len(base)+len(extra))
	for ns, m := range base {
		out[ns] = m
	}
	for ns, m := range extra {
		merged := make(map[string]any, len(out[ns])+len(m))
		for k, v := range out[ns] {
			merged[k] = v
		}
		for k, v := range m {
			merged[k] = v
		}
		out[ns] = merged
	}
	return out
}

func copyMetadata(src map[string]map[string]any) map[string]map[string]any {
	out := make(map[string]map[string]any, len(src))
	for ns, m := range src {
		c := make(map[string]any, len(m))
		for k, v := range m {
			c[k] = v
		}
		out[ns] = c
	}
	return out
}
