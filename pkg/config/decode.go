package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Load decodes an EndpointPickerConfig (YAML or JSON) strictly, applies the
// defaults that need no plugin registry, and validates the result. Every
// problem found comes back at once in an *Error.
func Load(data []byte) (*Config, error) {
	cfg, err := decode(data)
	if err != nil {
		return nil, err
	}
	applyDefaults(cfg, nil)
	if err := validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decode turns YAML into JSON (rejecting duplicate keys), checks the JSON
// tree against the schema to collect every unknown field and wrong type with
// its path, and only then decodes it into a Config.
func decode(data []byte) (*Config, error) {
	if err := singleDocument(data); err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, yamlError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, &Error{Problems: []Problem{{Message: fmt.Sprintf("parse: %v", err)}}}
	}
	if tree == nil {
		return nil, &Error{Problems: []Problem{{Message: "config is empty"}}}
	}
	var ps problems
	checkShape(&ps, "", tree, reflect.TypeFor[Config]())
	if err := ps.err(); err != nil {
		return nil, err
	}
	var cfg Config
	strict := json.NewDecoder(bytes.NewReader(js))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&cfg); err != nil {
		// checkShape accepts only what decodes; reaching here is a bug in
		// it, still reported as a problem rather than a panic.
		return nil, &Error{Problems: []Problem{{Message: fmt.Sprintf("decode: %v", err)}}}
	}
	return &cfg, nil
}

// singleDocument rejects multi-document YAML, whose later documents would
// otherwise be dropped without a word. A document counts when it holds a
// line that is neither blank nor a comment.
func singleDocument(data []byte) error {
	docs, content := 0, false
	for _, line := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			if content {
				docs++
			}
			content = len(bytes.TrimSpace(t[3:])) > 0
			continue
		}
		if s := bytes.TrimSpace(t); len(s) > 0 && s[0] != '#' {
			content = true
		}
	}
	if content {
		docs++
	}
	if docs > 1 {
		return &Error{Problems: []Problem{{Message: fmt.Sprintf("found %d YAML documents, expected one", docs)}}}
	}
	return nil
}

// yamlError flattens a YAML parser error onto one line (it is logged as
// one) with a hint for the one JSON limitation users hit.
func yamlError(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if !strings.HasPrefix(msg, "yaml: ") {
		msg = "yaml: " + msg
	}
	if strings.Contains(msg, "unsupported value") {
		msg += " (NaN and infinite numbers are not allowed)"
	}
	return &Error{Problems: []Problem{{Message: msg}}}
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkShape compares a decoded JSON value against the Go type it will be
// decoded into and records every mismatch. JSON null is accepted anywhere
// (it means "absent").
func checkShape(ps *problems, path string, v any, t reflect.Type) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		checkUnmarshal(ps, path, v, t)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		checkObject(ps, path, v, t)
	case reflect.Slice:
		checkList(ps, path, v, t)
	case reflect.String:
		expect[string](ps, path, v, "a string")
	case reflect.Bool:
		expect[bool](ps, path, v, "a boolean")
	case reflect.Float64:
		expect[json.Number](ps, path, v, "a number")
	case reflect.Int:
		n, ok := v.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			ps.add(path, "must be an integer, got %s", describe(v))
		}
	default:
		ps.add(path, "unsupported schema type %s", t)
	}
}

func expect[T any](ps *problems, path string, v any, what string) {
	if _, ok := v.(T); !ok {
		ps.add(path, "must be %s, got %s", what, describe(v))
	}
}

// checkUnmarshal runs a custom decoder (quantities, durations, raw
// parameters) on the value so its error is reported with the path.
func checkUnmarshal(ps *problems, path string, v any, t reflect.Type) {
	raw, err := json.Marshal(v)
	if err != nil {
		ps.add(path, "%v", err)
		return
	}
	dst := reflect.New(t).Interface().(json.Unmarshaler)
	if err := dst.UnmarshalJSON(raw); err != nil {
		ps.add(path, "%v", err)
	}
}

func checkObject(ps *problems, path string, v any, t reflect.Type) {
	m, ok := v.(map[string]any)
	if !ok {
		ps.add(path, "must be an object, got %s", describe(v))
		return
	}
	fields := jsonFields(t)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			ps.add(at(path, k), "unknown field (known: %s)", strings.Join(fieldNames(fields), ", "))
			continue
		}
		checkShape(ps, at(path, k), m[k], f.Type)
	}
}

func checkList(ps *problems, path string, v any, t reflect.Type) {
	list, ok := v.([]any)
	if !ok {
		ps.add(path, "must be a list, got %s", describe(v))
		return
	}
	for i, item := range list {
		checkShape(ps, idx(path, i), item, t.Elem())
	}
}

// jsonFields maps the JSON names of t's exported fields to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f
	}
	return out
}

func fieldNames(fields map[string]reflect.StructField) []string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// describe names a JSON value's type for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case json.Number:
		return "number " + x.String()
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
