package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// linkTarget matches the target of a markdown link or image.
var linkTarget = regexp.MustCompile(`\]\(([^)\s]+)`)

// renderFleet includes the fleet simulation's report (written by make
// bench-fleet into dir/fleet.md): its headings nested under this report's
// section, its relative links made relative to the combined report (rel is
// dir as seen from it), and any fleet plot in dir it does not show appended.
// A missing report is said, not hidden.
func renderFleet(w io.Writer, dir, rel string) error {
	src := filepath.Join(dir, "fleet.md")
	data, err := os.ReadFile(src)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "**Missing.** `%s` did not exist when this report was generated (it is written by `make bench-fleet`), "+
			"so the routing-quality results and the QPS-vs-TTFT curves per policy are not in this report.\n\n", filepath.ToSlash(src))
		return nil
	}
	if err != nil {
		return fmt.Errorf("fleet report: %w", err)
	}
	dated := ""
	if st, err := os.Stat(src); err == nil {
		dated = ", last written " + st.ModTime().UTC().Format("2006-01-02 15:04 MST")
	}
	fmt.Fprintf(w, "Included from `%s` (written by `make bench-fleet`%s).\n\n", filepath.ToSlash(src), dated)
	body := nestHeadings(string(data), 3)
	body = linkTarget.ReplaceAllStringFunc(body, func(m string) string {
		target := m[2:]
		if isRelative(target) {
			return "](" + path.Join(rel, target)
		}
		return m
	})
	fmt.Fprintln(w, strings.TrimSpace(body))
	fmt.Fprintln(w)
	extra, err := unshownPlots(dir, string(data))
	if err != nil {
		return err
	}
	for _, p := range extra {
		fmt.Fprintf(w, "![%s](%s)\n\n", p, path.Join(rel, p))
	}
	return nil
}

// checkStatus matches the verdict cell of the fleet report's check tables.
var checkStatus = regexp.MustCompile(`\| \*\*(PASS|FAIL|SKIP)\*\* \|`)

// freshnessHeading is the fleet report's freshness section, as pkg/fleet
// writes it.
const freshnessHeading = "What metric freshness is worth"

// disaggHeading is the fleet report's P/D study section.
const disaggHeading = "Prefill/decode disaggregation at equal server count"

// anchor is a heading's in-page link target as the renderers make it.
func anchor(heading string) string {
	return "#" + strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(heading), "/", ""), " ", "-")
}

// fleetSummary is the summary's line on the fleet simulation: its checks'
// verdicts (credibility and goals), read from dir/fleet.md, and a link to
// the freshness study when the report has one.
func fleetSummary(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "fleet.md"))
	if err != nil {
		return "- Fleet simulation: **missing** (no fleet.md; run `make bench-fleet`).\n"
	}
	count := map[string]int{}
	for _, m := range checkStatus.FindAllStringSubmatch(string(data), -1) {
		count[m[1]]++
	}
	line := fmt.Sprintf("- Fleet simulation: %d checks PASS, %d FAIL, %d SKIP (credibility first, then our default against upstream's and llm-d's); "+
		"see [section 3](#3-fleet-simulation-routing-quality)", count["PASS"], count["FAIL"], count["SKIP"])
	if strings.Contains(string(data), "# "+freshnessHeading) {
		line += ", [" + strings.ToLower(freshnessHeading[:1]) + freshnessHeading[1:] + "](" + anchor(freshnessHeading) + ") to routing"
	}
	if strings.Contains(string(data), "# "+disaggHeading) {
		line += ", [prefill/decode disaggregation](" + anchor(disaggHeading) + ") against aggregated serving"
	}
	return line + ".\n"
}

func isRelative(target string) bool {
	return !strings.Contains(target, "://") && !strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "#") &&
		!strings.HasPrefix(target, "mailto:")
}

// nestHeadings shifts every heading outside code fences so the topmost
// becomes level top.
func nestHeadings(md string, top int) string {
	lines := strings.Split(md, "\n")
	minLevel, fenced := 0, false
	for _, l := range lines {
		fenced = fenced != strings.HasPrefix(l, "```")
		if lv := headingLevel(l); !fenced && lv > 0 && (minLevel == 0 || lv < minLevel) {
			minLevel = lv
		}
	}
	if minLevel == 0 || minLevel >= top {
		return md
	}
	shift := strings.Repeat("#", top-minLevel)
	fenced = false
	for i, l := range lines {
		fenced = fenced != strings.HasPrefix(l, "```")
		if !fenced && headingLevel(l) > 0 {
			lines[i] = shift + l
		}
	}
	return strings.Join(lines, "\n")
}

// headingLevel is the ATX heading level of a line, 0 if it is none.
func headingLevel(l string) int {
	n := len(l) - len(strings.TrimLeft(l, "#"))
	if n == 0 || n > 6 || (len(l) > n && l[n] != ' ') {
		return 0
	}
	return n
}

// unshownPlots lists the fleet plots under dir (files whose path below dir
// starts with "fleet") that md does not reference, slash-separated.
func unshownPlots(dir, md string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || d.IsDir() {
			return err
		}
		rel = filepath.ToSlash(rel)
		ext := strings.ToLower(path.Ext(rel))
		if strings.HasPrefix(rel, "fleet") && (ext == ".png" || ext == ".svg") && !strings.Contains(md, rel) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fleet plots: %w", err)
	}
	slices.Sort(out)
	return out, nil
}
