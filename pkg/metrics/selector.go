package metrics

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// MatchOp is a label matcher operator, as in PromQL.
type MatchOp int

// The four PromQL label matcher operators.
const (
	MatchEqual MatchOp = iota
	MatchNotEqual
	MatchRegexp
	MatchNotRegexp
)

func (op MatchOp) String() string {
	switch op {
	case MatchNotEqual:
		return "!="
	case MatchRegexp:
		return "=~"
	case MatchNotRegexp:
		return "!~"
	default:
		return "="
	}
}

// Matcher constrains one label of a series. A label the series does not carry
// has the value "", as in PromQL.
type Matcher struct {
	Label string
	Op    MatchOp
	Value string
	re    *regexp.Regexp // anchored; set for the regexp operators
}

// Selector is a parsed PromQL-like instant-vector selector,
// `name{label="value",...}`: the metric family to read and which of its series
// qualify. Engine configs name every metric they read this way.
type Selector struct {
	Name     string
	Matchers []Matcher
}

// String renders the selector in canonical form (values always quoted).
func (s *Selector) String() string {
	if len(s.Matchers) == 0 {
		return s.Name
	}
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte('{')
	for i, m := range s.Matchers {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.Label)
		b.WriteString(m.Op.String())
		b.WriteString(strconv.Quote(m.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// Matches reports whether a series with labels satisfies every matcher.
func (s *Selector) Matches(labels []*dto.LabelPair) bool {
	for i := range s.Matchers {
		m := &s.Matchers[i]
		v := labelValue(labels, m.Label)
		var ok bool
		switch m.Op {
		case MatchEqual:
			ok = v == m.Value
		case MatchNotEqual:
			ok = v != m.Value
		case MatchRegexp:
			ok = m.re.MatchString(v)
		case MatchNotRegexp:
			ok = !m.re.MatchString(v)
		}
		if !ok {
			return false
		}
	}
	return true
}

func labelValue(labels []*dto.LabelPair, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ParseSelector parses spec, e.g. `nv_trt_llm_request_metrics{request_type="waiting"}`.
// Label values may be double-quoted (Go escapes), single-quoted, or unquoted
// (a run of characters up to `,` or `}`, trimmed), because upstream configs
// write `{request_type=waiting}`. The name may instead be given as a
// `__name__="..."` matcher. Regexp matchers are anchored, as in PromQL.
// An empty spec is an error here; callers treat "" as "disabled" before
// calling.
func ParseSelector(spec string) (*Selector, error) {
	p := selParser{in: spec}
	sel, err := p.parse()
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", spec, err)
	}
	return sel, nil
}

type selParser struct {
	in  string
	pos int
}

func (p *selParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *selParser) skipSpace() {
	for p.pos < len(p.in) && isSpace(p.in[p.pos]) {
		p.pos++
	}
}

func (p *selParser) parse() (*Selector, error) {
	p.skipSpace()
	if p.pos == len(p.in) {
		return nil, errors.New("empty selector")
	}
	sel := &Selector{Name: p.ident(true)}
	p.skipSpace()
	if sel.Name == "" && (p.pos == len(p.in) || p.in[p.pos] != '{') {
		return nil, p.errorf("expected metric name")
	}
	if p.pos < len(p.in) && p.in[p.pos] == '{' {
		p.pos++
		if err := p.matchers(sel); err != nil {
			return nil, err
		}
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.errorf("unexpected %q after selector", p.in[p.pos:])
	}
	return sel, p.liftName(sel)
}

// liftName moves a `__name__="x"` matcher into Name and checks a name exists.
func (p *selParser) liftName(sel *Selector) error {
	kept := sel.Matchers[:0]
	for _, m := range sel.Matchers {
		if m.Label != "__name__" {
			kept = append(kept, m)
			continue
		}
		if m.Op != MatchEqual || sel.Name != "" {
			return errors.New(`__name__ is only supported as the sole name, with "="`)
		}
		sel.Name = m.Value
	}
	sel.Matchers = kept
	if sel.Name == "" {
		return errors.New("missing metric name")
	}
	if !validMetricName(sel.Name) {
		return fmt.Errorf("invalid metric name %q", sel.Name)
	}
	return nil
}

// ident consumes a metric name (colons allowed) or a label name.
func (p *selParser) ident(metric bool) string {
	start := p.pos
	for p.pos < len(p.in) && isNameChar(p.in[p.pos], p.pos == start, metric) {
		p.pos++
	}
	return p.in[start:p.pos]
}

func (p *selParser) matchers(sel *Selector) error {
	for {
		p.skipSpace()
		if p.pos == len(p.in) {
			return p.errorf("missing closing '}'")
		}
		if p.in[p.pos] == '}' {
			p.pos++
			return nil
		}
		m, err := p.matcher()
		if err != nil {
			return err
		}
		sel.Matchers = append(sel.Matchers, m)
		p.skipSpace()
		if p.pos == len(p.in) {
			return p.errorf("missing closing '}'")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.in[p.pos] == '}' {
			continue
		}
		return p.errorf("expected ',' or '}'")
	}
}

func (p *selParser) matcher() (Matcher, error) {
	m := Matcher{Label: p.ident(false)}
	if m.Label == "" {
		return m, p.errorf("expected label name")
	}
	p.skipSpace()
	op, err := p.op()
	if err != nil {
		return m, err
	}
	m.Op = op
	p.skipSpace()
	if m.Value, err = p.value(); err != nil {
		return m, err
	}
	if op == MatchRegexp || op == MatchNotRegexp {
		if m.re, err = regexp.Compile("^(?:" + m.Value + ")$"); err != nil {
			return m, fmt.Errorf("label %q: %w", m.Label, err)
		}
	}
	return m, nil
}

func (p *selParser) op() (MatchOp, error) {
	rest := p.in[p.pos:]
	for _, c := range []struct {
		tok string
		op  MatchOp
	}{{"=~", MatchRegexp}, {"!~", MatchNotRegexp}, {"!=", MatchNotEqual}, {"=", MatchEqual}} {
		if strings.HasPrefix(rest, c.tok) {
			p.pos += len(c.tok)
			return c.op, nil
		}
	}
	return 0, p.errorf("expected one of =, !=, =~, !~")
}

func (p *selParser) value() (string, error) {
	if p.pos == len(p.in) {
		return "", p.errorf("missing label value")
	}
	switch q := p.in[p.pos]; q {
	case '"', '\'':
		return p.quoted(q)
	}
	start := p.pos
	for p.pos < len(p.in) && p.in[p.pos] != ',' && p.in[p.pos] != '}' {
		if c := p.in[p.pos]; c == '"' || c == '\'' || c == '{' || c == '=' {
			return "", p.errorf("unexpected %q in unquoted label value", c)
		}
		p.pos++
	}
	v := strings.TrimSpace(p.in[start:p.pos])
	if v == "" {
		p.pos = start
		return "", p.errorf("missing label value (write \"\" for an empty one)")
	}
	return v, nil
}

func (p *selParser) quoted(q byte) (string, error) {
	start := p.pos
	for p.pos++; p.pos < len(p.in); p.pos++ {
		switch p.in[p.pos] {
		case '\\':
			p.pos++
		case q:
			p.pos++
			return unquote(p.in[start:p.pos], q)
		}
	}
	p.pos = start
	return "", p.errorf("unterminated quoted label value")
}

func unquote(s string, q byte) (string, error) {
	if q == '\'' {
		// Re-quote a single-quoted body as a Go string so one escape grammar serves both.
		body := strings.ReplaceAll(s[1:len(s)-1], `\'`, `'`)
		s = `"` + strings.ReplaceAll(body, `"`, `\"`) + `"`
	}
	v, err := strconv.Unquote(s)
	if err != nil {
		return "", fmt.Errorf("bad escape in label value %s: %w", s, err)
	}
	return v, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isNameChar(c byte, first, metric bool) bool {
	switch {
	case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		return true
	case c == ':':
		return metric
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

func validMetricName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i], i == 0, true) {
			return false
		}
	}
	return s != ""
}

func validLabelName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i], i == 0, false) {
			return false
		}
	}
	return s != ""
}
