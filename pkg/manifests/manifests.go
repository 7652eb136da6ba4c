// Package manifests reads a YAML stream of Kubernetes manifests (documents
// separated by ---), the form the EPP's Kubernetes-less policy files take
// (--objectives-file, --model-rewrites-file): the documents one would
// apply to a cluster.
package manifests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// LoadFile reads path and parses it with parse; a parse error names the
// file (what: "objectives file").
func LoadFile[T any](path, what string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, err
	}
	v, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf("%s %q: %w", what, path, err)
	}
	return v, nil
}

// Each calls parse with every document of data that is not empty or only
// comments, numbered from 1 as they appear. The errors parse returns are
// collected, each prefixed with its document's number, so that a file
// reports every problem at once; a stream that cannot be split stops there.
func Each(data []byte, parse func(doc int, raw []byte) error) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var errs []error
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
			break
		}
		if len(bytes.TrimSpace(raw)) == 0 || isComment(raw) {
			continue
		}
		if err := parse(doc, raw); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
		}
	}
	return errors.Join(errs...)
}

// isComment reports a document of comments only.
func isComment(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// DecodeStrict decodes one YAML document into obj, refusing duplicate and
// unknown fields (a misspelt field is an error, not a silent default).
func DecodeStrict(raw []byte, obj any) error {
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return fmt.Errorf("%w%s", err, BooleanHint(err))
	}
	return nil
}

// BooleanHint explains a boolean given where a string belongs: YAML reads
// unquoted y, n, yes, no, on, off, true and false as booleans. It is "" for
// any other error.
func BooleanHint(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Value == "bool" && typeErr.Type != nil && typeErr.Type.Kind() == reflect.String {
		return " (YAML reads unquoted y, n, yes, no, on, off, true and false as booleans: quote the value)"
	}
	return ""
}
