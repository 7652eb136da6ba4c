package requestcontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/logevery"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// AttributeReporterType is the type name of AttributeReporter (GIE v1.5.0
// and llm-d).
const AttributeReporterType = "request-attribute-reporter"

// DefaultMetadataNamespace is where an attribute goes when its key names no
// namespace: the namespace the destination endpoint is published in.
const DefaultMetadataNamespace = "envoy.lb"

// maxExpressionCost bounds one evaluation, so an expression that iterates
// cannot hold a response's last chunk for long; reading and adding a few
// usage fields costs under 20.
const maxExpressionCost = 10_000

// reportErrorLogEvery spaces the logs of failing evaluations: a broken
// expression fails on every response, and the metric counts each one.
const reportErrorLogEvery = 30 * time.Second

const metricAttributeReports = "openepp_request_attribute_reports_total"

// AttributeReporterParams are upstream's parameters.
type AttributeReporterParams struct {
	// Attributes to report; upstream takes exactly one, OpenEPP any number
	// with distinct keys.
	Attributes []ReportedAttribute `json:"attributes" doc:"values to report, each {key: {namespace (default envoy.lb), name}, expression (CEL over usage, a number; reported as an integer), condition (optional CEL, a bool)}; at least one, keys distinct. usage has prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details.cached_tokens, absent when the server reported none"`
}

// ReportedAttribute is one value reported per response.
type ReportedAttribute struct {
	Key MetadataKey `json:"key"`
	// Expression is CEL over `usage`; it must evaluate to a number, which
	// is reported truncated to an integer as upstream does.
	Expression string `json:"expression"`
	// Condition, when set, is CEL over `usage` that must evaluate to true
	// for the attribute to be reported.
	Condition string `json:"condition,omitempty"`
}

// MetadataKey is where in the proxy's dynamic metadata a value goes.
type MetadataKey struct {
	// Namespace defaults to DefaultMetadataNamespace.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// AttributeReporter is upstream's request-attribute-reporter: when a
// response ends it evaluates CEL expressions over the token usage the model
// server reported and returns each value to the proxy as dynamic metadata
// on the answer to the response's last message, where Envoy can log it,
// rate-limit on it (token quotas) or bill it.
//
// `usage` holds prompt_tokens, completion_tokens, total_tokens and
// prompt_tokens_details.cached_tokens (also under GIE's misspelling
// prompt_token_details), as numbers (CEL doubles, as upstream passes them),
// whatever the API: the Responses and Anthropic Messages APIs' input and
// output tokens are reported under these names. When the server reported
// no usage (a stream without include_usage, an error) the fields are
// absent: has(usage.prompt_tokens) is false, and an expression that reads
// one fails and is counted, not reported as 0.
type AttributeReporter struct {
	name       scheduler.TypedName
	attributes []compiledAttribute
	log        logr.Logger
	reports    *prometheus.CounterVec
}

type compiledAttribute struct {
	key       MetadataKey
	expr      cel.Program
	condition cel.Program // nil: always reported
	// errorLog limits the log lines of this attribute's failures.
	errorLog logevery.Throttle
}

var _ scheduler.ResponseReporter = (*AttributeReporter)(nil)

// AttributeReporterFactory builds an AttributeReporter from config; an
// expression that does not compile, or is not a number, fails the config.
func AttributeReporterFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p AttributeReporterParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	r, err := NewAttributeReporter(name, p)
	if err != nil {
		return nil, err
	}
	if h != nil {
		r.log = h.Log.WithValues("plugin", name)
		if h.Registerer != nil {
			r.reports, err = promreg.Shared(h.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: metricAttributeReports,
				Help: "Responses request-attribute-reporter evaluated, by attribute (metadata namespace and key) and outcome (reported, skipped by its condition, failed).",
			}, []string{"plugin", "metadata_namespace", "key", "outcome"}))
			if err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// AttributeReporterRegistration describes the plugin type for the registry.
func AttributeReporterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    AttributeReporterType,
		Factory: AttributeReporterFactory,
		Params:  AttributeReporterParams{},
		Summary: "Reports values computed by CEL expressions over the response's token usage (e.g. usage.prompt_tokens + usage.completion_tokens) to the proxy as dynamic metadata (envoy.lb by default), on the answer to the response's last message.",
	}
}

// usageEnv is the CEL environment of every expression: one variable,
// `usage`, a JSON object as upstream declares it.
var usageEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("usage", cel.ObjectType("google.protobuf.Struct")))
	if err != nil {
		panic(err) // a fixed declaration: fails in every test if wrong
	}
	return env
}()

// NewAttributeReporter compiles p's expressions.
func NewAttributeReporter(name string, p AttributeReporterParams) (*AttributeReporter, error) {
	if len(p.Attributes) == 0 {
		return nil, errors.New("attributes: at least one attribute is required")
	}
	r := &AttributeReporter{name: scheduler.TypedName{Type: AttributeReporterType, Name: name}, log: logr.Discard(),
		attributes: make([]compiledAttribute, len(p.Attributes))}
	seen := map[MetadataKey]bool{}
	for i, a := range p.Attributes {
		where := fmt.Sprintf("attributes[%d]", i)
		if a.Key.Namespace == "" {
			a.Key.Namespace = DefaultMetadataNamespace
		}
		if strings.TrimSpace(a.Key.Name) == "" {
			return nil, fmt.Errorf("%s.key.name: required", where)
		}
		if seen[a.Key] {
			return nil, fmt.Errorf("%s.key: %s/%s is reported twice", where, a.Key.Namespace, a.Key.Name)
		}
		seen[a.Key] = true
		c := &r.attributes[i]
		c.key = a.Key
		var err error
		if c.expr, err = compileUsage(a.Expression, where+".expression", false); err != nil {
			return nil, err
		}
		if strings.TrimSpace(a.Condition) != "" {
			if c.condition, err = compileUsage(a.Condition, where+".condition", true); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// compileUsage compiles src and checks its type: a bool for a condition, a
// number otherwise; dyn passes (anything read from usage is dyn until run).
func compileUsage(src, where string, condition bool) (cel.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%s: required", where)
	}
	ast, iss := usageEnv.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%s %q: %w", where, src, iss.Err())
	}
	want, ok := "a number", false
	switch k := ast.OutputType().Kind(); {
	case k == types.DynKind || k == types.AnyKind:
		ok = true
	case condition:
		want, ok = "a bool", k == types.BoolKind
	default:
		ok = k == types.IntKind || k == types.UintKind || k == types.DoubleKind
	}
	if !ok {
		return nil, fmt.Errorf("%s %q: evaluates to %s, want %s", where, src, ast.OutputType(), want)
	}
	prg, err := usageEnv.Program(ast, cel.CostLimit(maxExpressionCost))
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", where, src, err)
	}
	return prg, nil
}

// TypedName implements scheduler.Plugin.
func (r *AttributeReporter) TypedName() scheduler.TypedName { return r.name }

// ReportResponse evaluates every attribute over the response's usage.
func (r *AttributeReporter) ReportResponse(_ context.Context, _ *scheduler.State, req *scheduler.Request, resp *scheduler.Response) {
	vars := map[string]any{"usage": usageStruct(resp)}
	for i := range r.attributes {
		a := &r.attributes[i]
		v, outcome, err := a.evaluate(vars)
		if err != nil {
			r.logFailure(a, req, err)
		} else if outcome == "reported" {
			resp.SetMetadata(a.key.Namespace, a.key.Name, v)
		}
		if r.reports != nil {
			r.reports.WithLabelValues(r.name.Name, a.key.Namespace, a.key.Name, outcome).Inc()
		}
	}
}

// evaluate returns the attribute's value and the outcome label.
func (a *compiledAttribute) evaluate(vars map[string]any) (float64, string, error) {
	if a.condition != nil {
		v, _, err := a.condition.Eval(vars)
		if err != nil {
			return 0, "failed", fmt.Errorf("condition: %w", err)
		}
		ok, isBool := v.Value().(bool)
		if !isBool {
			return 0, "failed", fmt.Errorf("condition evaluated to %s, not a bool", v.Type().TypeName())
		}
		if !ok {
			return 0, "skipped", nil
		}
	}
	v, _, err := a.expr.Eval(vars)
	if err != nil {
		return 0, "failed", fmt.Errorf("expression: %w", err)
	}
	var f float64
	switch x := v.Value().(type) {
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, "failed", fmt.Errorf("expression evaluated to %v", x)
		}
		f = math.Trunc(x)
	default:
		return 0, "failed", fmt.Errorf("expression evaluated to %s, not a number", v.Type().TypeName())
	}
	return f, "reported", nil
}

func (r *AttributeReporter) logFailure(a *compiledAttribute, req *scheduler.Request, err error) {
	if !a.errorLog.Allow(time.Now(), reportErrorLogEvery) {
		return
	}
	r.log.Error(err, "Request attribute not reported (logged at most every 30s; "+metricAttributeReports+" counts each)",
		"namespace", a.key.Namespace, "key", a.key.Name, "requestID", req.ID)
}

// usageStruct is the `usage` variable: the reported usage under the chat
// API's names, or an empty object when the server reported none.
func usageStruct(resp *scheduler.Response) *structpb.Struct {
	if !resp.UsageKnown {
		return &structpb.Struct{}
	}
	u := resp.Usage
	details := structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"cached_tokens": structpb.NewNumberValue(float64(u.CachedTokens)),
	}})
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"prompt_tokens":         structpb.NewNumberValue(float64(u.PromptTokens)),
		"completion_tokens":     structpb.NewNumberValue(float64(u.CompletionTokens)),
		"total_tokens":          structpb.NewNumberValue(float64(u.TotalTokens)),
		"prompt_tokens_details": details,
		"prompt_token_details":  details,
	}}
}
