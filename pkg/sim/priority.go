package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Request priority: every generation API takes a top-level integer
// "priority", as vLLM's and SGLang's do. The engine orders by it only under
// the priority scheduling policy (Config.SchedulingPolicy); under fcfs it
// is still validated, then ignored, as vLLM does. See doc.go.

// parsePriority reads a request's priority field: absent or null is 0;
// otherwise it must be an integer within int32's range. A number with a
// zero fraction (2.0, 1e3) counts as an integer, as vLLM's validation
// accepts it; strings, booleans, objects and fractions do not. The error
// names the field.
func parsePriority(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if isAbsent(raw) {
		return 0, nil
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return 0, fmt.Errorf("priority: must be an integer, got %s", jsonValueKind(raw))
	}
	if v, err := strconv.ParseInt(string(raw), 10, 32); err == nil {
		return int(v), nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("priority: must be an integer, got %s", raw)
	case f != math.Trunc(f):
		return 0, fmt.Errorf("priority: must be an integer, got %s", raw)
	case f < math.MinInt32 || f > math.MaxInt32:
		return 0, fmt.Errorf("priority: must be in [%d, %d], got %s", math.MinInt32, math.MaxInt32, raw)
	}
	return int(f), nil
}

// jsonValueKind names the kind of a JSON value that is not a number.
func jsonValueKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	}
	return string(raw)
}

// enginePriority turns a request's priority into the engine's convention,
// vLLM's, where lower runs first. An instance impersonating SGLang reads it
// as SGLang does by default (higher is more urgent), so negates it.
func (i *Instance) enginePriority(v int) int {
	if i.cfg.MetricsEngine == EngineSGLang {
		return -v
	}
	return v
}

// requestPriority parses raw and converts it for the engine.
func (i *Instance) requestPriority(raw json.RawMessage) (int, error) {
	v, err := parsePriority(raw)
	return i.enginePriority(v), err
}
