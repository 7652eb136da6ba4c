package epp

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// The shipped dashboard and alerting rules (docs/deploy.md, "Dashboards and
// alerts").
const (
	dashboardFile = "../../deploy/grafana/openepp.json"
	alertsFile    = "../../deploy/prometheus/openepp-alerts.yaml"
)

// TestDashboardAndAlertsReadServedMetrics checks that every PromQL
// expression of the dashboard (panel queries and variable queries) and of
// the alerting rules reads only metric families the EPP serves
// (servedFamilies), a histogram only through its _bucket, _sum and _count
// series, and only labels those families have (or a scrape adds); that
// legends and alert annotations name labels the expression has; and that
// every panel has a title and a query, and every alert a duration, a
// severity, a summary and a description.
func TestDashboardAndAlertsReadServedMetrics(t *testing.T) {
	t.Parallel()
	c := checker{servedFamilies(t)}
	t.Run("dashboard", func(t *testing.T) {
		for _, p := range dashboardProblems(t, c) {
			t.Errorf("%s: %s", strings.TrimPrefix(dashboardFile, "../../"), p)
		}
	})
	t.Run("alerts", func(t *testing.T) {
		for _, p := range alertProblems(t, c) {
			t.Errorf("%s: %s", strings.TrimPrefix(alertsFile, "../../"), p)
		}
	})
}

// scrapeLabels are put on every series by the scrape: job and instance by
// Prometheus, namespace, pod and service by Kubernetes service discovery
// (a ServiceMonitor or a pod scrape).
var scrapeLabels = wordSet(`job instance namespace pod service`)

// checker checks PromQL expressions against the served families.
type checker struct{ fams families }

// check returns the labels the series expr reads can have (nil when a
// metric is unknown), and what is wrong with it.
func (c checker) check(expr string) (map[string]bool, []string) {
	refs, err := parsePromQL(expr)
	if err != nil {
		return nil, []string{err.Error()}
	}
	labels := maps.Clone(scrapeLabels)
	var problems []string
	if len(refs.selectors) == 0 {
		problems = append(problems, "reads no metric")
	}
	unresolved := false
	for _, sel := range refs.selectors {
		fam, bucket, problem := c.resolve(sel.metric)
		if problem != "" {
			problems = append(problems, problem)
			unresolved = true
			continue
		}
		own := maps.Clone(fam.labels)
		own["le"] = bucket
		for _, l := range sel.labels {
			if !own[l] && !scrapeLabels[l] {
				problems = append(problems, fmt.Sprintf("%s has no label %q", sel.metric, l))
			}
		}
		for l, ok := range own {
			labels[l] = labels[l] || ok
		}
	}
	if unresolved { // its labels are unknown
		return nil, problems
	}
	for _, l := range refs.grouping {
		if !labels[l] {
			problems = append(problems, fmt.Sprintf("groups on %q, a label none of its metrics has", l))
		}
	}
	return labels, problems
}

// resolve finds the family of a series name: a family's own name, or a
// histogram's with _bucket (bucket is then true), _sum or _count. (The EPP
// serves no summary of its own; the Go runtime's are not read.)
func (c checker) resolve(name string) (f *family, bucket bool, problem string) {
	if name == "" {
		return nil, false, "a selector without a metric name cannot be checked"
	}
	if f := c.fams[name]; f != nil {
		if f.observer {
			return nil, false, fmt.Sprintf("%s is a histogram: read %[1]s_bucket, %[1]s_sum or %[1]s_count", name)
		}
		return f, false, ""
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f := c.fams[base]; ok && f != nil && f.observer {
			return f, suffix == "_bucket", ""
		}
	}
	return nil, false, name + " is not served by the EPP"
}

var (
	legendLabel     = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	annotationLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
	grafanaVariable = regexp.MustCompile(`\$\{?([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)`)
)

// templateProblems reports labels text names (by re) that labels lacks.
func templateProblems(re *regexp.Regexp, text string, labels map[string]bool) []string {
	var problems []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if labels != nil && !labels[m[1]] {
			problems = append(problems, fmt.Sprintf("names label %q, which its query does not have", m[1]))
		}
	}
	return problems
}

type dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Panels        []panel
	Templating    struct{ List []variable }
}

type panel struct {
	ID         int
	Type       string
	Title      string
	Datasource struct{ UID string }
	Targets    []struct {
		Expr         string
		LegendFormat string `json:"legendFormat"`
		RefID        string `json:"refId"`
	}
	Panels []panel // a collapsed row's
}

type variable struct {
	Name  string
	Type  string
	Query json.RawMessage // a string, or {"query": "..."}
}

// dashboardProblems checks every panel and variable of the dashboard.
func dashboardProblems(t *testing.T, c checker) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var problems []string
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	if !defined["datasource"] || d.SchemaVersion < 36 {
		problems = append(problems, "want a datasource variable and schemaVersion 36 or later")
	}
	for _, v := range d.Templating.List {
		problems = append(problems, variableProblems(c, v, defined)...)
	}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				problems = append(problems, fmt.Sprintf("panel id %d used twice", p.ID))
			}
			ids[p.ID] = true
			problems = append(problems, panelProblems(c, p, defined)...)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return problems
}

func panelProblems(c checker, p panel, defined map[string]bool) []string {
	where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
	var problems []string
	switch {
	case p.Title == "":
		problems = append(problems, where+": no title")
	case p.Type == "row":
		return problems
	case len(p.Targets) == 0:
		problems = append(problems, where+": no query")
	case p.Datasource.UID != "${datasource}":
		problems = append(problems, where+": its data source is not ${datasource}")
	}
	for _, q := range p.Targets {
		labels, ps := c.check(q.Expr)
		ps = append(ps, templateProblems(legendLabel, q.LegendFormat, labels)...)
		ps = append(ps, undefinedVariables(q.Expr, defined)...)
		for _, problem := range ps {
			problems = append(problems, fmt.Sprintf("%s, query %s: %s\n\t%s", where, q.RefID, problem, q.Expr))
		}
	}
	return problems
}

// labelValues is Grafana's label_values([selector, ]label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((?:(.*),)?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)

func variableProblems(c checker, v variable, defined map[string]bool) []string {
	if v.Type != "query" {
		return nil
	}
	var query string
	if json.Unmarshal(v.Query, &query) != nil {
		var q struct{ Query string }
		_ = json.Unmarshal(v.Query, &q)
		query = q.Query
	}
	m := labelValues.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil || m[1] == "" {
		return []string{fmt.Sprintf("variable %q: want label_values(selector, label), got %q", v.Name, query)}
	}
	labels, problems := c.check(m[1])
	if labels != nil && !labels[m[2]] {
		problems = append(problems, fmt.Sprintf("its metric has no label %q", m[2]))
	}
	problems = append(problems, undefinedVariables(m[1], defined)...)
	for i, p := range problems {
		problems[i] = fmt.Sprintf("variable %q: %s\n\t%s", v.Name, p, query)
	}
	return problems
}

// undefinedVariables reports Grafana variables expr uses that the
// dashboard does not define (Grafana's own start with __).
func undefinedVariables(expr string, defined map[string]bool) []string {
	var problems []string
	for _, m := range grafanaVariable.FindAllStringSubmatch(expr, -1) {
		name := m[1] + m[2]
		if !defined[name] && !strings.HasPrefix(name, "__") {
			problems = append(problems, fmt.Sprintf("uses variable $%s, which the dashboard does not define", name))
		}
	}
	return problems
}

type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// alertProblems checks every rule of the rule file, decoded strictly (a
// misspelt field is an error, as it is to Prometheus).
func alertProblems(t *testing.T, c checker) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var problems []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			labels, ps := c.check(r.Expr)
			if r.Alert != "" {
				ps = append(ps, alertShape(r)...)
				for _, a := range slices.Sorted(maps.Keys(r.Annotations)) {
					ps = append(ps, templateProblems(annotationLabel, r.Annotations[a], labels)...)
				}
			}
			for _, p := range ps {
				problems = append(problems, fmt.Sprintf("group %q, rule %q: %s\n\t%s", g.Name, name, p, r.Expr))
			}
		}
	}
	return problems
}

// alertShape checks what every alert must carry.
func alertShape(r rule) []string {
	var problems []string
	if d, err := model.ParseDuration(r.For); err != nil || d <= 0 {
		problems = append(problems, fmt.Sprintf("for %q: want a duration above 0", r.For))
	}
	if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
		problems = append(problems, fmt.Sprintf("severity %q: want critical, warning or info", s))
	}
	for _, a := range []string{"summary", "description"} {
		if strings.TrimSpace(r.Annotations[a]) == "" {
			problems = append(problems, "no "+a+" annotation")
		}
	}
	return problems
}

// TestCheckerCatches proves the check has teeth, on made-up families.
func TestCheckerCatches(t *testing.T) {
	t.Parallel()
	fams := families{}
	fams.add("req_total", []string{"model"}, false)
	fams.add("dur_seconds", []string{"model"}, true)
	c := checker{fams}
	tests := []struct {
		name, expr string
		want       []string
	}{
		{name: "fine", expr: `histogram_quantile(0.9, sum by (le, model, namespace) (rate(dur_seconds_bucket{model=~"$m", job="j"}[$__rate_interval])))`},
		{name: "strings and comments", expr: "label_replace(req_total, \"dst\", \"$1\", \"model\", \"(other_total)\") # not_served_total"},
		{name: "not served", expr: `rate(reqs_total[5m])`, want: []string{"reqs_total is not served by the EPP"}},
		{name: "bare histogram", expr: `dur_seconds`, want: []string{"dur_seconds is a histogram: read dur_seconds_bucket, dur_seconds_sum or dur_seconds_count"}},
		{name: "suffix of a counter", expr: `req_total_count`, want: []string{"req_total_count is not served by the EPP"}},
		{name: "matcher label", expr: `req_total{modle="x"}`, want: []string{`req_total has no label "modle"`}},
		{name: "grouping label", expr: `sum by (fairness_id) (req_total)`, want: []string{`groups on "fairness_id", a label none of its metrics has`}},
		{name: "le without buckets", expr: `sum by (le) (rate(dur_seconds_sum[5m]))`, want: []string{`groups on "le", a label none of its metrics has`}},
		{name: "unknown function", expr: `rat(req_total[5m])`, want: []string{`unknown function "rat"`}},
		{name: "no metric", expr: `vector(1)`, want: []string{"reads no metric"}},
		{name: "no metric name", expr: `{__name__="req_total"}`, want: []string{"a selector without a metric name cannot be checked"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, got := c.check(tc.expr)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems of %s (-want +got):\n%s", tc.expr, diff)
			}
		})
	}
}

// TestParsePromQL checks the tokenizer on the forms the files use.
func TestParsePromQL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want promqlRefs
	}{
		{
			expr: `histogram_quantile(0.9, sum by (le, model_name) (rate(a_bucket{x="1", y=~"$v"}[$__rate_interval]))) > 0.5 and on (job) b offset 5m`,
			want: promqlRefs{selectors: []selector{{"a_bucket", []string{"x", "y"}}, {metric: "b"}}, grouping: []string{"le", "model_name", "job"}},
		},
		{
			expr: "sum without (instance) (c:rate5m) / ignoring (pod) group_left (name) d{}\n  or count_values(\"v\", e) * 1e-3 + Inf",
			want: promqlRefs{selectors: []selector{{metric: "c:rate5m"}, {metric: "d"}, {metric: "e"}}, grouping: []string{"instance", "pod", "name"}},
		},
		{
			expr: `max_over_time((time() * (increase(f{g!="}"}[2m]) > bool 0))[1h:1m]) == bool 1`,
			want: promqlRefs{selectors: []selector{{"f", []string{"g"}}}},
		},
	}
	for _, tc := range tests {
		got, err := parsePromQL(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(promqlRefs{}, selector{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.expr, diff)
		}
	}
}
