package epp

import (
	"fmt"
	"strings"
)

// selector is one vector selector of a PromQL expression: the metric name
// and the label names its matchers use.
type selector struct {
	metric string
	labels []string
}

// promqlRefs is what a PromQL expression refers to. It is found by a
// tokenizer, not a parser: enough to name every metric and label a
// dashboard or alert reads, not to prove the expression well-formed.
type promqlRefs struct {
	selectors []selector
	// grouping are the labels of by, without, on, ignoring, group_left and
	// group_right clauses.
	grouping []string
}

// promqlKeywords are identifiers that name neither a metric nor a
// function. The clauses among them (promqlClauses) may be followed by a
// parenthesised list of label names.
var (
	promqlKeywords = wordSet(`by without on ignoring group_left group_right offset bool and or unless atan2 inf nan`)
	promqlClauses  = wordSet(`by without on ignoring group_left group_right`)
)

// promqlAggregations may be followed by a by/without clause before their
// parenthesis.
var promqlAggregations = wordSet(`sum avg count min max group stddev stdvar topk bottomk quantile
	count_values limitk limit_ratio`)

// promqlFunctions are Prometheus's functions (3.x, which keeps 2.x's).
var promqlFunctions = wordSet(`abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time
	ceil changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
	days_in_month deg delta deriv double_exponential_smoothing end exp floor histogram_avg histogram_count
	histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour
	idelta increase info irate label_join label_replace last_over_time ln log10 log2 mad_over_time
	max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time rad
	rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt start
	stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year`)

func wordSet(words string) map[string]bool {
	set := map[string]bool{}
	for _, w := range strings.Fields(words) {
		set[w] = true
	}
	return set
}

// parsePromQL lists the metrics and labels expr refers to. Grafana's
// variables ($name, ${name}, [[name]]) are skipped wherever they stand.
func parsePromQL(expr string) (promqlRefs, error) {
	var refs promqlRefs
	s := &scanner{src: expr}
	for {
		tok, kind := s.next()
		switch kind {
		case tokEOF:
			return refs, s.err
		case tokIdent:
			if err := refs.ident(s, tok); err != nil {
				return refs, err
			}
		case tokOpenBrace:
			// A selector without a metric name ({__name__=...}) cannot be
			// checked: the caller sees it as a selector of metric "".
			labels, err := s.matchers()
			if err != nil {
				return refs, err
			}
			refs.selectors = append(refs.selectors, selector{labels: labels})
		}
	}
}

// ident classifies an identifier: keyword, aggregation, function or
// metric name (whose matchers, if any, follow).
func (r *promqlRefs) ident(s *scanner, tok string) error {
	lower := strings.ToLower(tok)
	switch {
	case promqlClauses[lower] && s.peek('('):
		labels, err := s.labelList()
		r.grouping = append(r.grouping, labels...)
		return err
	case promqlKeywords[lower]:
		return nil
	case promqlAggregations[tok]:
		return nil
	case s.peek('('):
		if !promqlFunctions[tok] {
			return fmt.Errorf("unknown function %q", tok)
		}
		return nil
	}
	sel := selector{metric: tok}
	if s.peek('{') {
		s.next()
		labels, err := s.matchers()
		if err != nil {
			return err
		}
		sel.labels = labels
	}
	r.selectors = append(r.selectors, sel)
	return nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokOpenBrace
	tokOther
)

// scanner walks a PromQL expression, skipping strings, numbers,
// durations, ranges, comments and Grafana variables.
type scanner struct {
	src string
	pos int
	err error
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func (s *scanner) skipSpace() {
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			s.pos++
		case c == '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// peek reports whether the next non-space character is c.
func (s *scanner) peek(c byte) bool {
	s.skipSpace()
	return s.pos < len(s.src) && s.src[s.pos] == c
}

// next returns the next identifier or opening brace; everything else is
// consumed and reported as tokOther.
func (s *scanner) next() (string, tokKind) {
	s.skipSpace()
	if s.pos >= len(s.src) || s.err != nil {
		return "", tokEOF
	}
	start, c := s.pos, s.src[s.pos]
	switch {
	case isIdentStart(c):
		for s.pos < len(s.src) && isIdentChar(s.src[s.pos]) {
			s.pos++
		}
		return s.src[start:s.pos], tokIdent
	case c >= '0' && c <= '9' || c == '.':
		s.number()
	case c == '"' || c == '\'' || c == '`':
		s.str()
	case c == '$':
		s.variable()
	case c == '[':
		s.skipTo(']')
	case c == '{':
		s.pos++
		return "{", tokOpenBrace
	default:
		s.pos++
	}
	return "", tokOther
}

// number skips a number or duration (0.5, 1e-3, 0x1f, 5m, 1h30m).
func (s *scanner) number() {
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case isIdentChar(c) || c == '.':
			s.pos++
		case (c == '+' || c == '-') && (s.src[s.pos-1] == 'e' || s.src[s.pos-1] == 'E'):
			s.pos++
		default:
			return
		}
	}
}

// str skips a quoted string.
func (s *scanner) str() {
	quote := s.src[s.pos]
	for s.pos++; s.pos < len(s.src); s.pos++ {
		switch s.src[s.pos] {
		case '\\':
			if quote != '`' {
				s.pos++
			}
		case quote:
			s.pos++
			return
		}
	}
	s.err = fmt.Errorf("unterminated string at offset %d", s.pos)
}

// variable skips a Grafana variable: $name or ${name[:format]}.
func (s *scanner) variable() {
	s.pos++
	if s.pos < len(s.src) && s.src[s.pos] == '{' {
		s.skipTo('}')
		return
	}
	for s.pos < len(s.src) && isIdentChar(s.src[s.pos]) {
		s.pos++
	}
}

// skipTo skips a bracketed part (a range, a subquery, [[variable]]) up
// to its matching close.
func (s *scanner) skipTo(closer byte) {
	opener, depth := s.src[s.pos], 0
	for ; s.pos < len(s.src); s.pos++ {
		switch s.src[s.pos] {
		case opener:
			depth++
		case closer:
			if depth--; depth == 0 {
				s.pos++
				return
			}
		}
	}
	s.err = fmt.Errorf("unclosed %q", opener)
}

// matchers reads label matchers after an opening brace, up to the closing
// one, and returns the label names matched.
func (s *scanner) matchers() ([]string, error) {
	var labels []string
	for {
		tok, kind := s.next()
		switch {
		case kind == tokEOF:
			return labels, fmt.Errorf("unclosed {")
		case kind == tokIdent:
			labels = append(labels, tok)
		case s.pos > 0 && s.src[s.pos-1] == '}':
			return labels, s.err
		}
	}
}

// labelList reads a parenthesised list of label names.
func (s *scanner) labelList() ([]string, error) {
	s.next() // (
	var labels []string
	for {
		s.skipSpace()
		if s.pos < len(s.src) && s.src[s.pos] == ')' {
			s.pos++
			return labels, nil
		}
		tok, kind := s.next()
		switch kind {
		case tokEOF:
			return labels, fmt.Errorf("unclosed label list")
		case tokIdent:
			labels = append(labels, tok)
		}
	}
}
