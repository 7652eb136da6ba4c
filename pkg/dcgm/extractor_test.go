package dcgm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// page is a DCGM Exporter page with Kubernetes mapping: two GPUs of
// pod-a, one of pod-b, and a field the extractor does not read.
const page = `# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",container="vllm",namespace="default",pod="pod-a"} 37
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-1",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",container="vllm",namespace="default",pod="pod-a"} 64
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-2",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",container="vllm",namespace="default",pod="pod-b"} 90
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-0",pod="pod-a"} 71000
`

func TestExtract(t *testing.T) {
	t.Parallel()
	unlabelled := `# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-0"} 12
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-1"} 48
`
	tests := []struct {
		name    string
		page    string
		spec    endpoint.Spec
		want    float64
		present bool
	}{
		{name: "pod label matches Spec.Pod: max over its GPUs", page: page,
			spec: endpoint.Spec{Name: "pod-a-rank-0", Pod: "pod-a"}, want: 0.64, present: true},
		{name: "the other pod's GPU", page: page,
			spec: endpoint.Spec{Name: "pod-b-rank-0", Pod: "pod-b"}, want: 0.90, present: true},
		{name: "no pod: Spec.Name is matched", page: page,
			spec: endpoint.Spec{Name: "pod-b"}, want: 0.90, present: true},
		{name: "only other pods' samples", page: page,
			spec: endpoint.Spec{Name: "pod-c-rank-0", Pod: "pod-c"}},
		{name: "samples without a pod label are kept", page: unlabelled,
			spec: endpoint.Spec{Name: "pod-c-rank-0", Pod: "pod-c"}, want: 0.48, present: true},
		{name: "an empty pod label is no label", page: "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",pod=\"\"} 20\n",
			spec: endpoint.Spec{Name: "e", Pod: "pod-a"}, want: 0.20, present: true},
		{name: "unlabelled and own samples together, others' ignored",
			page: "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",pod=\"pod-a\"} 10\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\"} 40\nDCGM_FI_DEV_GPU_UTIL{gpu=\"2\",pod=\"pod-b\"} 95\n",
			spec: endpoint.Spec{Name: "x", Pod: "pod-a"}, want: 0.40, present: true},
		{name: "untyped samples (no TYPE line)", page: "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 5\n",
			spec: endpoint.Spec{Name: "e"}, want: 0.05, present: true},
		{name: "values above 100 are clamped", page: "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 250\n",
			spec: endpoint.Spec{Name: "e"}, want: 1, present: true},
		{name: "NaN samples are skipped", page: "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} NaN\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\"} 30\n",
			spec: endpoint.Spec{Name: "e"}, want: 0.30, present: true},
		{name: "family missing", page: "# TYPE DCGM_FI_DEV_FB_USED gauge\nDCGM_FI_DEV_FB_USED{gpu=\"0\"} 1\n",
			spec: endpoint.Spec{Name: "e"}},
		{name: "empty page", page: "", spec: endpoint.Spec{Name: "e"}},
	}
	x := &Extractor{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fams, err := parse([]byte(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			ep := endpoint.New(tc.spec)
			// A value from before must be replaced, or removed.
			ep.SetAttributes(endpoint.Attributes{UtilizationKey: 0.99, "other/producer": 7})
			x.Extract(ep, fams)
			got, ok := ep.Attribute(UtilizationKey)
			if ok != tc.present || cmp.Diff(tc.want, got, cmp.Comparer(approx)) != "" {
				t.Errorf("attribute = %v (present %v), want %v (present %v)", got, ok, tc.want, tc.present)
			}
			if v, _ := ep.Attribute("other/producer"); v != 7 {
				t.Errorf("another producer's attribute changed: %v", v)
			}
		})
	}
}

func approx(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestClearRemovesOnlyTheUtilization(t *testing.T) {
	t.Parallel()
	ep := endpoint.New(endpoint.Spec{Name: "e"})
	x := &Extractor{}
	x.Clear(ep) // nothing to remove: no write
	if ep.AttributesSnapshot() != nil {
		t.Errorf("clearing an endpoint without attributes wrote %v", ep.AttributesSnapshot())
	}
	ep.SetAttributes(endpoint.Attributes{UtilizationKey: 0.5, "other/producer": 1})
	x.Clear(ep)
	if diff := cmp.Diff(endpoint.Attributes{"other/producer": 1}, ep.AttributesSnapshot()); diff != "" {
		t.Errorf("attributes after Clear (-want +got):\n%s", diff)
	}
}

func TestExtractorNamesAndParameters(t *testing.T) {
	t.Parallel()
	if want := endpoint.AttributeKey(UtilizationAttribute, ExtractorType); UtilizationKey != want {
		t.Errorf("UtilizationKey = %q, want %q", UtilizationKey, want)
	}
	for _, raw := range []string{"", "null", "{}"} {
		p, err := ExtractorFactory("x", json.RawMessage(raw), &scheduler.Handle{})
		if err != nil {
			t.Errorf("params %q: %v", raw, err)
			continue
		}
		if got := p.TypedName(); got != (scheduler.TypedName{Type: ExtractorType, Name: "x"}) {
			t.Errorf("TypedName = %v", got)
		}
	}
	if _, err := ExtractorFactory("x", json.RawMessage(`{"family": "DCGM_FI_DEV_MEM_COPY_UTIL"}`), &scheduler.Handle{}); err == nil ||
		!strings.Contains(err.Error(), `unknown field "family"`) {
		t.Errorf("a parameter was accepted: %v", err)
	}
	if r := ExtractorRegistration(); r.Type != ExtractorType || r.Factory == nil || r.Params != nil {
		t.Errorf("registration %+v", r)
	}
}
