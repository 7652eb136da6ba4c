package metrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFilterPage(t *testing.T) {
	t.Parallel()
	families := []string{"a:x", "b"}
	tests := []struct {
		name string
		page string
		want string
	}{
		{
			name: "keeps samples and metadata of wanted families only",
			page: "# HELP a:x help text\n# TYPE a:x gauge\na:x{l=\"1\"} 1\na:x_bucket{le=\"1\"} 2\n" +
				"# HELP a:xy other\n# TYPE c counter\nc 3\n# some comment\nb 4\n",
			want: "# TYPE a:x gauge\na:x{l=\"1\"} 1\nb 4\n",
		},
		{name: "no trailing newline", page: "b 1", want: "b 1\n"},
		{name: "leading whitespace and blank lines", page: "\n  \n  b 1\n\t# TYPE b gauge\n", want: "  b 1\n\t# TYPE b gauge\n"},
		{name: "name then space", page: "b   7\nbb 8\n", want: "b   7\n"},
		{name: "bare token kept for the parser to reject", page: "garbage\n", want: "garbage\n"},
		{name: "quoted utf-8 names", page: "{\"b\",l=\"1\"} 1\n{\"z\"} 2\n# TYPE \"b\" gauge\n", want: "{\"b\",l=\"1\"} 1\n# TYPE \"b\" gauge\n"},
		{name: "unclassifiable quoted name kept", page: "{\"b\\\"q\"} 1\n", want: "{\"b\\\"q\"} 1\n"},
		{name: "HELP lines dropped", page: "# HELP\n# HELPER b\n# HELP b text\n# TYPEX b\n", want: ""},
		{name: "crlf", page: "b 1\r\nc 2\r\n", want: "b 1\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := string(filterPage(nil, []byte(tc.page), families))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("filterPage mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilterPageShrinksVLLM(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	got := filterPage(nil, page, builtin(t, EngineVLLM).families)
	if len(got)*10 > len(page) {
		t.Errorf("filtered page is %d of %d bytes; want under 10%%", len(got), len(page))
	}
	if n := strings.Count(string(got), "\n"); n != 12 {
		t.Errorf("filtered page has %d lines, want 12 (5 families x TYPE, 7 samples):\n%s", n, got)
	}
}
