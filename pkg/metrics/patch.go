package metrics

import (
	"bytes"
	"strconv"

	dto "github.com/prometheus/client_model/go"
)

// patchValues updates fam, the parse of the family run prev, to the run cur
// without parsing cur, when the two differ only in sample values: the usual
// scrape of a busy server, whose load gauges move while its series stay
// put. It applies only where the result is certain to equal what the text
// parser would build from cur:
//
//   - fam is a counter, gauge or untyped family, so each sample line is one
//     metric, in order;
//   - cur and prev have the same lines but for the last token of some
//     sample lines, and that token is the value, not a timestamp: what
//     precedes it ends with the label set's '}' or is the bare metric name;
//   - each new value is a float the parser accepts.
//
// It reports false, leaving fam untouched, when any of these fails; the
// caller then parses cur.
func patchValues(fam *dto.MetricFamily, cur, prev []byte) bool {
	switch fam.GetType() {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
	default:
		return false
	}
	type change struct {
		metric int
		value  float64
	}
	var buf [8]change
	changes := buf[:0]
	metric := 0
	for len(cur) > 0 && len(prev) > 0 {
		c, p := nextLine(&cur), nextLine(&prev)
		if len(c) > 0 && c[0] == '#' {
			if !bytes.Equal(c, p) {
				return false
			}
			continue
		}
		if !bytes.Equal(c, p) {
			v, ok := changedValue(c, p)
			if !ok {
				return false
			}
			changes = append(changes, change{metric, v})
		}
		metric++
	}
	if len(cur) != 0 || len(prev) != 0 || metric != len(fam.Metric) {
		return false
	}
	for _, ch := range changes {
		if valueOf(fam.Metric[ch.metric]) == nil {
			return false // the parser never builds such a metric; be safe
		}
	}
	for _, ch := range changes {
		*valueOf(fam.Metric[ch.metric]) = ch.value
	}
	return true
}

// nextLine cuts the first line (without its newline) off *text.
func nextLine(text *[]byte) []byte {
	line, rest, _ := bytes.Cut(*text, []byte{'\n'})
	*text = rest
	return line
}

// changedValue returns the value of sample line c, which differs from p
// only in its last token, if that token is the value and parses as the
// text parser would parse it.
func changedValue(c, p []byte) (float64, bool) {
	cut := lastBlank(c)
	if cut < 0 || cut != lastBlank(p) || !bytes.Equal(c[:cut], p[:cut]) {
		return 0, false
	}
	head, token := c[:cut], c[cut+1:]
	if len(head) == 0 || len(token) == 0 {
		return 0, false
	}
	bareName := bytes.IndexAny(head, " \t{") < 0
	if head[len(head)-1] != '}' && !bareName {
		return 0, false // the token may be a timestamp
	}
	// As expfmt's parseFloat: strconv's syntax minus hex and underscores.
	if bytes.ContainsAny(token, "pP_") {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(token), 64)
	return v, err == nil
}

// lastBlank is the index of the last space or tab in line, or -1.
func lastBlank(line []byte) int {
	return bytes.LastIndexAny(line, " \t")
}

// valueOf points at m's counter, gauge or untyped value, or is nil.
func valueOf(m *dto.Metric) *float64 {
	switch {
	case m.GetGauge() != nil:
		return m.Gauge.Value
	case m.GetCounter() != nil:
		return m.Counter.Value
	case m.GetUntyped() != nil:
		return m.Untyped.Value
	}
	return nil
}
