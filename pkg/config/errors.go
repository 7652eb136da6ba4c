package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration, located by its path in
// the file (for example `schedulingProfiles[0].plugins[1].weight`).
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error reports every problem found in a configuration at once, so a user
// fixes a file in one round instead of one error per restart. Its message is
// a single line, suitable for one log entry.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	noun := "problems"
	if len(parts) == 1 {
		noun = "problem"
	}
	return fmt.Sprintf("invalid config (%d %s): %s", len(parts), noun, strings.Join(parts, "; "))
}

// Strings returns the problems as "path: message" lines.
func (e *Error) Strings() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.String()
	}
	return out
}

// problems collects Problems while a stage walks the config.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was collected, else an *Error.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &Error{Problems: ps}
}

// at joins a parent path and a field name.
func at(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

// idx appends a list index to a path.
func idx(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }
