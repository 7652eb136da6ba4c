package metrics

import (
	"bytes"
)

// filterPage appends to dst the lines of a Prometheus text page that belong
// to one of families (their samples and their # TYPE lines) and
// returns dst. Everything else, typically 95%+ of a vLLM page (histogram
// buckets, process and Python runtime metrics), never reaches the parser.
//
// The filter only decides which lines to keep; the kept lines are still
// parsed (and validated) by expfmt. A line it cannot classify is kept, so a
// malformed page still fails in the parser rather than passing silently.
func filterPage(dst, page []byte, families []string) []byte {
	dst, _ = filterSegments(dst, nil, page, families)
	return dst
}

// segment is a run of consecutive kept lines of one family, as byte offsets
// into the filtered page.
type segment struct {
	// family indexes the families slice; unclassified for a line kept only
	// so that the parser rejects it.
	family     int
	start, end int
}

// Results of classifying a line.
const (
	dropLine     = -2
	unclassified = -1
)

// filterSegments is filterPage that also appends to segs the family runs of
// the filtered page, so a caller can tell which families changed.
func filterSegments(dst []byte, segs []segment, page []byte, families []string) ([]byte, []segment) {
	for len(page) > 0 {
		var line []byte
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			line, page = page, nil
		}
		fam := classifyLine(line, families)
		if fam == dropLine {
			continue
		}
		start := len(dst)
		dst = append(dst, line...)
		if line[len(line)-1] != '\n' {
			dst = append(dst, '\n')
		}
		if n := len(segs); n > 0 && segs[n-1].family == fam && segs[n-1].end == start {
			segs[n-1].end = len(dst)
		} else {
			segs = append(segs, segment{family: fam, start: start, end: len(dst)})
		}
	}
	return dst, segs
}

// classifyLine is on the hot path (every line of every page): it compares
// the line's start with each wanted name instead of first finding where the
// name ends, so most lines are rejected after a few bytes. It returns the
// index of the line's family, unclassified for a line to keep for the
// parser to reject, or dropLine.
func classifyLine(line []byte, families []string) int {
	rest := line
	if rest[0] == ' ' || rest[0] == '\t' {
		rest = bytes.TrimLeft(rest, " \t")
		if len(rest) == 0 {
			return dropLine
		}
	}
	switch rest[0] {
	case '\n', '\r':
		return dropLine
	case '#':
		return classifyComment(rest, families)
	case '{':
		// Quoted (UTF-8) metric name: {"name",label="v"} 1
		name, ok := quotedName(rest)
		if !ok {
			return unclassified
		}
		return familyIndex(name, families)
	}
	for i, f := range families {
		if len(rest) > len(f) && string(rest[:len(f)]) == f && isNameEnd(rest[len(f)]) {
			return i
		}
	}
	// Keep a line that is nothing but one token ("garbage\n"): the parser
	// reports it, where dropping it would hide a broken page.
	// A sample line's value follows a space near the end: search backwards.
	if bytes.LastIndexByte(rest, ' ') < 0 && bytes.IndexByte(rest, '\t') < 0 && bytes.IndexByte(rest, '{') < 0 {
		return unclassified
	}
	return dropLine
}

func isNameEnd(c byte) bool { return c == '{' || c == ' ' || c == '\t' }

// classifyComment keeps "# TYPE name ..." of wanted families. HELP lines
// and other comments carry nothing the extraction reads, and HELP text is
// the longest part of a family to parse.
func classifyComment(line []byte, families []string) int {
	rest := bytes.TrimLeft(line[1:], " \t")
	if !bytes.HasPrefix(rest, []byte("TYPE")) {
		return dropLine
	}
	rest = rest[4:]
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return dropLine
	}
	rest = bytes.TrimLeft(rest, " \t")
	quoted := len(rest) > 0 && rest[0] == '"'
	if quoted {
		rest = rest[1:]
	}
	for i, f := range families {
		if len(rest) <= len(f) || string(rest[:len(f)]) != f {
			continue
		}
		switch c := rest[len(f)]; {
		case quoted && c == '"', !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return i
		}
	}
	return dropLine
}

func quotedName(line []byte) ([]byte, bool) {
	if len(line) < 2 || line[1] != '"' {
		return nil, false
	}
	body := line[2:]
	end := bytes.IndexByte(body, '"')
	if end < 0 || bytes.IndexByte(body[:end], '\\') >= 0 {
		return nil, false
	}
	return body[:end], true
}

func familyIndex(name []byte, families []string) int {
	for i, f := range families {
		if string(name) == f {
			return i
		}
	}
	return dropLine
}
