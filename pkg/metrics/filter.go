package metrics

import (
	"bytes"
)

// filterPage appends to dst the lines of a Prometheus text page that belong
// to one of families (their samples and their # HELP / # TYPE lines) and
// returns dst. Everything else, typically 95%+ of a vLLM page (histogram
// buckets, process and Python runtime metrics), never reaches the parser.
//
// The filter only decides which lines to keep; the kept lines are still
// parsed (and validated) by expfmt. A line it cannot classify is kept, so a
// malformed page still fails in the parser rather than passing silently.
func filterPage(dst, page []byte, families []string) []byte {
	for len(page) > 0 {
		var line []byte
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			line, page = page, nil
		}
		if keepLine(line, families) {
			dst = append(dst, line...)
			if line[len(line)-1] != '\n' {
				dst = append(dst, '\n')
			}
		}
	}
	return dst
}

// keepLine is on the hot path (every line of every page): it compares the
// line's start with each wanted name instead of first finding where the name
// ends, so most lines are rejected after a few bytes.
func keepLine(line []byte, families []string) bool {
	rest := line
	if rest[0] == ' ' || rest[0] == '\t' {
		rest = bytes.TrimLeft(rest, " \t")
		if len(rest) == 0 {
			return false
		}
	}
	switch rest[0] {
	case '\n', '\r':
		return false
	case '#':
		return keepComment(rest, families)
	case '{':
		// Quoted (UTF-8) metric name: {"name",label="v"} 1
		name, ok := quotedName(rest)
		return !ok || wanted(name, families)
	}
	for _, f := range families {
		if len(rest) > len(f) && string(rest[:len(f)]) == f && isNameEnd(rest[len(f)]) {
			return true
		}
	}
	// Keep a line that is nothing but one token ("garbage\n"): the parser
	// reports it, where dropping it would hide a broken page.
	// A sample line's value follows a space near the end: search backwards.
	return bytes.LastIndexByte(rest, ' ') < 0 && bytes.IndexByte(rest, '\t') < 0 && bytes.IndexByte(rest, '{') < 0
}

func isNameEnd(c byte) bool { return c == '{' || c == ' ' || c == '\t' }

// keepComment keeps "# HELP name ..." and "# TYPE name ..." of wanted
// families; other comments carry nothing the parser needs.
func keepComment(line []byte, families []string) bool {
	rest := bytes.TrimLeft(line[1:], " \t")
	if !bytes.HasPrefix(rest, []byte("HELP")) && !bytes.HasPrefix(rest, []byte("TYPE")) {
		return false
	}
	rest = rest[4:]
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	quoted := len(rest) > 0 && rest[0] == '"'
	if quoted {
		rest = rest[1:]
	}
	for _, f := range families {
		if len(rest) <= len(f) || string(rest[:len(f)]) != f {
			continue
		}
		switch c := rest[len(f)]; {
		case quoted && c == '"', !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return true
		}
	}
	return false
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

func wanted(name []byte, families []string) bool {
	for _, f := range families {
		if string(name) == f {
			return true
		}
	}
	return false
}
