package plugins

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// kindOf names the section a plugin type belongs to, from the package that
// defines its factory, so a new plugin lands in the right place by itself.
var kindOf = map[string]string{
	"profiles":       "Profile handlers",
	"filters":        "Filters",
	"scorers":        "Scorers",
	"latency":        "Scorers",
	"mmcache":        "Scorers",
	"pickers":        "Pickers",
	"prefix":         "Data producers",
	"precise":        "Data producers",
	"p2psource":      "Data producers",
	"burst":          "Data producers",
	"requestcontrol": "Request control",
	"metrics":        "Data layer",
	"discovery":      "Data layer",
	"models":         "Data layer",
	"dcgm":           "Data layer",
	"flowcontrol":    "Flow control policies",
	"eviction":       "Flow control policies",
	"disagg":         "Disaggregated serving",
	"topology":       "Disaggregated serving",
	"plugins":        "Request parsers",
}

var kindOrder = []string{"Profile handlers", "Disaggregated serving", "Filters", "Scorers", "Pickers", "Data producers", "Request control", "Data layer",
	"Flow control policies", "Request parsers", "Other"}

// Markdown renders the reference of regs (docs/plugins.md): every type with
// its summary and parameters (JSON name, type, default, meaning).
func Markdown(regs []scheduler.Registration) string {
	sections := map[string][]scheduler.Registration{}
	for _, r := range regs {
		sections[kind(r)] = append(sections[kind(r)], r)
	}
	var b strings.Builder
	b.WriteString("# Plugin reference\n\n")
	b.WriteString("Generated from the plugin registry by `make docs`; a test fails when it is stale.\n")
	b.WriteString("Every type below can be used in an `EndpointPickerConfig` file under `plugins[].type`,\n")
	b.WriteString("with `parameters` decoded strictly (unknown keys are errors). What the stateful ones hold at\n")
	b.WriteString("run time is served at `/debug/plugins/state` ([Plugin state](plugin-state.md)).\n")
	for _, k := range kindOrder {
		if len(sections[k]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n", k)
		for _, r := range sections[k] {
			fmt.Fprintf(&b, "\n### `%s`\n\n%s\n", r.Type, r.Summary)
			writeParams(&b, r.Params)
		}
	}
	return b.String()
}

func kind(r scheduler.Registration) string {
	// A type named for its role goes there whatever package holds it (the
	// session and prefix filters and the in-flight producer live beside the
	// scorers whose code they share).
	switch {
	case strings.HasSuffix(r.Type, "-eviction-filter"):
		return "Flow control policies"
	case strings.HasSuffix(r.Type, "-filter"):
		return "Filters"
	case strings.HasSuffix(r.Type, "-producer"):
		return "Data producers"
	case strings.HasSuffix(r.Type, "-admitter"):
		return "Request control"
	}
	fn := runtime.FuncForPC(reflect.ValueOf(r.Factory).Pointer()).Name()
	pkg, _, _ := strings.Cut(fn[strings.LastIndex(fn, "/")+1:], ".")
	if k, ok := kindOf[pkg]; ok {
		return k
	}
	return "Other"
}

func writeParams(b *strings.Builder, params any) {
	rows := paramRows(reflect.TypeOf(params), "")
	if len(rows) == 0 {
		b.WriteString("\nNo parameters.\n")
		return
	}
	b.WriteString("\n| Parameter | Type | Default | Meaning |\n|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r)
	}
}

// paramRows lists a Params struct's fields; nested structs are flattened
// with dotted names.
func paramRows(t reflect.Type, prefix string) []string {
	if t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var rows []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		if f.Anonymous && f.Tag.Get("json") == "" { // embedded: JSON flattens it
			rows = append(rows, paramRows(ft, prefix)...)
			continue
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" && f.Tag.Get("doc") == "" {
			rows = append(rows, paramRows(ft, prefix+name+".")...)
			continue
		}
		rows = append(rows, fmt.Sprintf("| `%s%s` | %s | %s | %s |\n", prefix, name, typeName(ft),
			cell(f.Tag.Get("default")), cell(f.Tag.Get("doc"))))
	}
	return rows
}

func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[json.RawMessage]() {
		return "any"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Int, reflect.Int32, reflect.Int64:
		if strings.HasSuffix(strings.ToLower(t.Name()), "duration") {
			return "duration"
		}
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	}
	return t.Kind().String()
}

func cell(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}
