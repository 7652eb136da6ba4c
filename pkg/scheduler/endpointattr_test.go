package scheduler_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// deriver derives the attributes "zone" (a string) and "rank" (a number)
// from the labels of the same names.
type deriver struct{ name string }

func (d deriver) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "test-deriver", Name: d.name}
}

func (deriver) NumberAttribute(name string) (func(*endpoint.Endpoint) (float64, bool), error) {
	if name != "rank" {
		return nil, fmt.Errorf("no number %q", name)
	}
	return func(e *endpoint.Endpoint) (float64, bool) {
		return float64(len(e.Labels["rank"])), e.Labels["rank"] != ""
	}, nil
}

func (deriver) StringAttribute(name string) (func(*endpoint.Endpoint) (string, bool), error) {
	if name != "zone" {
		return nil, fmt.Errorf("no string %q", name)
	}
	return func(e *endpoint.Endpoint) (string, bool) { v, ok := e.Labels["zone"]; return v, ok }, nil
}

// other is a plugin that derives nothing.
type other struct{ name string }

func (o other) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "other", Name: o.name}
}

func ptr(s string) *string { return &s }

func TestNumberAttr(t *testing.T) {
	t.Parallel()
	e := endpoint.New(endpoint.Spec{Name: "e", Address: "10.0.0.1", Port: 80, Labels: map[string]string{"rank": "xxx"}})
	e.SetAttributes(endpoint.Attributes{"rank/derive": 9, "rank/other": 7, "rank/core-metrics-extractor": 5, "rank": 4})
	h := (&scheduler.Handle{}).WithPlugins(deriver{"derive"}, other{"other"})
	for _, tc := range []struct {
		name     string
		producer *string
		h        *scheduler.Handle
		want     float64
	}{
		{name: "default producer, stored", want: 5, h: h},
		{name: "empty producer, stored", producer: ptr(""), want: 4, h: h},
		{name: "a deriver, derived", producer: ptr("derive"), want: 3, h: h},
		{name: "a plugin that is no deriver, stored", producer: ptr("other"), want: 7, h: h},
		{name: "a deriver, unresolved: stored", producer: ptr("derive"), want: 9},
	} {
		a, err := scheduler.NewNumberAttr("rank", tc.producer)
		if err != nil {
			t.Fatal(err)
		}
		if tc.h != nil {
			if err := a.Resolve(tc.h); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		if got, ok := a.Read(e); !ok || got != tc.want {
			t.Errorf("%s: read %v, %v; want %v", tc.name, got, ok, tc.want)
		}
	}
	a, _ := scheduler.NewNumberAttr("zone", ptr("derive"))
	if err := a.Resolve(h); err == nil || err.Error() != `producer "derive" (test-deriver): no number "zone"` {
		t.Errorf("a deriver without the number: err = %v", err)
	}
}

func TestStringAttr(t *testing.T) {
	t.Parallel()
	e := endpoint.New(endpoint.Spec{Name: "e", Address: "10.0.0.1", Port: 80, Labels: map[string]string{"zone": "z1"}})
	one := (&scheduler.Handle{}).WithPlugins(other{"o"}, deriver{"d"})
	for _, tc := range []struct {
		name     string
		producer *string
		h        *scheduler.Handle
		want     string // "": not read
		wantErr  string // fragment
		unpub    bool   // wantErr wraps ErrNotPublished
	}{
		{name: "named", producer: ptr("d"), h: one, want: "z1"},
		{name: "absent: the only deriver", h: one, want: "z1"},
		{name: "absent, none", h: (&scheduler.Handle{}).WithPlugins(other{"o"}), wantErr: "producer: required: the config has no label-producer"},
		{name: "absent, no handle", wantErr: "producer: required"},
		{name: "absent, two", h: (&scheduler.Handle{}).WithPlugins(deriver{"a"}, deriver{"b"}), wantErr: "has 2 plugins deriving endpoint attributes (a, b)"},
		{name: "names no deriver", producer: ptr("o"), h: one, wantErr: `string attribute "zone" of producer "o"`, unpub: true},
		{name: "empty namespace", producer: ptr(""), h: one, wantErr: `of producer ""`, unpub: true},
		{name: "no handle", producer: ptr("d"), wantErr: `of producer "d"`, unpub: true},
	} {
		a, err := scheduler.NewStringAttr("zone", tc.producer)
		if err != nil {
			t.Fatal(err)
		}
		err = a.Resolve(tc.h)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
		if errors.Is(err, scheduler.ErrNotPublished) != tc.unpub {
			t.Errorf("%s: errors.Is(%v, ErrNotPublished) != %v", tc.name, err, tc.unpub)
		}
		if got, ok := a.Read(e); got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: read %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	if _, err := scheduler.NewStringAttr(" ", nil); err == nil {
		t.Error("a blank name was accepted")
	}
}

func TestWithPlugins(t *testing.T) {
	t.Parallel()
	a, b, dup := other{"a"}, deriver{"b"}, deriver{"a"}
	h := (&scheduler.Handle{}).WithPlugins(a, b, dup)
	if got := h.Plugins(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Plugins() = %v, want [a b]", got)
	}
	if p, ok := h.Plugin("a"); !ok || p != a {
		t.Errorf("Plugin(a) = %v, %v; want the first a", p, ok)
	}
	if (*scheduler.Handle)(nil).Plugins() != nil {
		t.Error("a nil handle lists plugins")
	}
}
