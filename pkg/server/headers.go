package server

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Names of the EPP protocol (GIE proposal 004) and control headers.
const (
	DestinationHeader   = "x-gateway-destination-endpoint"
	ServedKey           = "x-gateway-destination-endpoint-served"
	ScoresKey           = "x-gateway-destination-endpoint-scores"
	SubsetKey           = "x-gateway-destination-endpoint-subset"
	LBNamespace         = "envoy.lb"
	SubsetNamespace     = "envoy.lb.subset_hint"
	RequestIDHeader     = "x-request-id"
	DroppedReasonHeader = "x-gateway-request-dropped-reason"
	// LLMDDroppedReasonHeader is llm-d's name for the same reason; both are
	// set so clients written for either keep working.
	LLMDDroppedReasonHeader = "x-llm-d-request-dropped-reason"
)

// Control headers exist under GIE's x-gateway-* names and llm-d's x-llm-d-*
// names; both are read, the llm-d name winning when both are present.
var (
	objectiveHeaders = []string{"x-llm-d-inference-objective", "x-gateway-inference-objective"}
	fairnessHeaders  = []string{"x-llm-d-inference-fairness-id", "x-gateway-inference-fairness-id"}
	rewriteHeaders   = []string{"x-llm-d-model-name-rewrite", "x-gateway-model-name-rewrite"}
)

// firstHeader returns the first non-empty value among names.
func firstHeader(h map[string]string, names []string) string {
	for _, n := range names {
		if v := h[n]; v != "" {
			return v
		}
	}
	return ""
}

// headerMap flattens Envoy's header map into lower-case names; values come
// from raw_value, falling back to value. Repeated headers are joined with ","
// as HTTP allows.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	if hm == nil {
		return map[string]string{}
	}
	out := make(map[string]string, len(hm.Headers))
	for _, h := range hm.Headers {
		k := strings.ToLower(h.Key)
		v := string(h.RawValue)
		if v == "" {
			v = h.Value
		}
		if prev, ok := out[k]; ok && !strings.HasPrefix(k, ":") {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}

// setHeader builds an overwriting header mutation entry.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// headerSets builds the set_headers of a routing answer, each entry
// overwriting: the entries share one allocation and their values another,
// instead of three allocations per header.
type headerSets struct {
	list    []*corev3.HeaderValueOption
	entries []headerSet
	raw     []byte
}

type headerSet struct {
	opt corev3.HeaderValueOption
	hv  corev3.HeaderValue
}

// newHeaderSets makes room for n headers whose values total size bytes;
// more only cost more allocations.
func newHeaderSets(n, size int) headerSets {
	return headerSets{list: make([]*corev3.HeaderValueOption, 0, n), entries: make([]headerSet, n), raw: make([]byte, 0, size)}
}

func (s *headerSets) add(name, value string) {
	if len(s.list) == len(s.entries) {
		s.list = append(s.list, setHeader(name, value))
		return
	}
	e := &s.entries[len(s.list)]
	// Values already handed out keep the old array if append moves raw.
	start := len(s.raw)
	s.raw = append(s.raw, value...)
	e.hv.Key, e.hv.RawValue = name, s.raw[start:len(s.raw):len(s.raw)]
	e.opt.Header, e.opt.AppendAction = &e.hv, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	s.list = append(s.list, &e.opt)
}

// filterMetadataString returns filter_metadata[ns][key] as a string, if it
// is one.
func filterMetadataString(md map[string]*structpb.Struct, ns, key string) string {
	s := md[ns]
	if s == nil {
		return ""
	}
	return s.GetFields()[key].GetStringValue()
}
