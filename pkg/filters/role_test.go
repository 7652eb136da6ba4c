package filters

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestRoleFilters(t *testing.T) {
	t.Parallel()
	roles := []string{"encode", "prefill", "decode", "encode-prefill", "encode-decode", "prefill-decode", "encode-prefill-decode", "both", "", "Decode", "other"}
	var eps []*endpoint.Endpoint
	for _, r := range roles {
		eps = append(eps, ep(r, "10.0.0.1", map[string]string{RoleLabel: r}, nil))
	}
	eps = append(eps, ep("unlabeled", "10.0.0.2", map[string]string{"app": "vllm"}, nil), ep("nil-labels", "10.0.0.3", nil, nil))
	tests := []struct {
		name    string
		factory scheduler.Factory
		typ     string
		want    []string
	}{
		{name: "decode", factory: DecodeFactory, typ: DecodeType,
			want: []string{"decode", "prefill-decode", "encode-prefill-decode", "both", "unlabeled", "nil-labels"}},
		{name: "prefill", factory: PrefillFactory, typ: PrefillType,
			want: []string{"prefill", "encode-prefill", "prefill-decode", "encode-prefill-decode", "both"}},
		{name: "encode", factory: EncodeFactory, typ: EncodeType,
			want: []string{"encode", "encode-prefill", "encode-prefill-decode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := tc.factory("r", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			f := p.(*Role)
			if got := f.TypedName(); got != (scheduler.TypedName{Type: tc.typ, Name: "r"}) {
				t.Errorf("TypedName = %v, want type %q", got, tc.typ)
			}
			got := f.Filter(ctx, plugintest.State(1), nil, eps)
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			_, err = tc.factory("r", []byte(`{"label":"x"}`), nil)
			wantErr(t, err, `unknown field "label"`)
		})
	}
}

func TestRoleConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("m", 100)
	for _, f := range []*Role{NewDecode("d", RoleParams{}), NewPrefill("p", RoleParams{}), NewEncode("e", RoleParams{})} {
		plugintest.Filter(t, f, req)
	}
}

func BenchmarkRole(b *testing.B) {
	benchFilter(b, NewDecode("d", RoleParams{}), plugintest.Request("m", 100))
}
