package discovery

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/endpoint"
)

// FuzzLoadFile checks endpoints-file decoding (OpenEPP's and llm-d's
// forms) on any bytes: it never panics; a rejected file gets an error
// naming the file; every accepted endpoint has an IP address, a port in
// 1-65535, a metrics port in 0-65535 and a unique, non-empty name; and the
// accepted endpoints written back as a file load again unchanged.
func FuzzLoadFile(f *testing.F) {
	for _, text := range []string{
		"- address: 10.0.0.1\n  port: 8000\n  labels: {role: decode}\n- name: b\n  address: 10.0.0.2\n  port: 8001\n",
		"endpoints:\n- {address: 10.0.0.1, port: 8000}\n",
		"- {address: nope, port: 1}\n- {address: 10.0.0.1, port: 0}\n",
		"- {address: 10.0.0.1, port: 1, prot: 2}\n",
		"endpoints: []\nendpoint: []\n",
		"endpoints: {name: a}\n",
		"- 10.0.0.1:8000\n",
		"::::\n\t-",
		"endpoints:\n- {name: vllm-0, namespace: ns, address: 10.0.0.1, port: \"8080\", metricsHost: \"10.0.0.1:9090\"}\n",
		"endpoints:\n- {address: \"::1\", port: \" 80 \", metricsHost: \"[0:0::1]:9000\", metricsPort: 9000}\n",
		"- {address: 10.0.0.1, port: 1, node: \" gpu-node-1\"}\n", "- {address: 10.0.0.1, port: 1, node: 7}\n",
		"- {name: j, address: 10.0.0.1, port: \"3\"}\n- {name: j, address: 10.0.0.2, port: \"3\"}\n",
		"- {address: 10.0.0.1, port: 8.5}\n- {address: 10.0.0.1, port: 1e3}\n- {address: 10.0.0.1, port: 0x1F90}\n",
		"[]\n", "null\n", "", "7\n",
	} {
		f.Add([]byte(text), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, llmd bool) {
		namespace := ""
		if llmd {
			namespace = DefaultNamespace // file-discovery's default
		}
		specs, err := decodeFile("eps.yaml", data, namespace)
		if err != nil {
			if specs != nil || !strings.Contains(err.Error(), `"eps.yaml"`) {
				t.Fatalf("rejected file: specs %v, error %q does not name the file", specs, err)
			}
			return
		}
		checkSpecs(t, specs)
		again, err := decodeFile("eps.yaml", writeEntries(t, specs), namespace)
		if err != nil {
			t.Fatalf("accepted endpoints written back do not load: %v\ninput %q", err, data)
		}
		if diff := cmp.Diff(specs, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("endpoints written back load differently (-first +again):\n%s", diff)
		}
	})
}

func checkSpecs(t *testing.T, specs []endpoint.Spec) {
	t.Helper()
	names := map[string]bool{}
	for _, s := range specs {
		switch {
		case net.ParseIP(s.Address) == nil:
			t.Fatalf("accepted %q: address %q is not an IP", s.Name, s.Address)
		case s.Port < 1 || s.Port > 65535:
			t.Fatalf("accepted %q: port %d", s.Name, s.Port)
		case s.MetricsPort < 0 || s.MetricsPort > 65535:
			t.Fatalf("accepted %q: metrics port %d", s.Name, s.MetricsPort)
		case s.Name == "" || names[s.Name]:
			t.Fatalf("accepted name %q, empty or a duplicate", s.Name)
		}
		names[s.Name] = true
	}
}

// writeEntries is specs as an endpoints file.
func writeEntries(t *testing.T, specs []endpoint.Spec) []byte {
	t.Helper()
	entries := make([]FileEntry, len(specs))
	for i, s := range specs {
		entries[i] = FileEntry{Name: s.Name, Namespace: s.Namespace, Address: s.Address,
			Port: json.RawMessage(strconv.Itoa(s.Port)), MetricsPort: s.MetricsPort, Node: s.Node, Labels: s.Labels}
	}
	out, err := yaml.Marshal(map[string]any{"endpoints": entries})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
