package pickers

import (
	"testing"

	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestRandomConformance(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		plugintest.Picker(t, NewRandom("r", Params{MaxNumOfEndpoints: n}), plugintest.Request("m", 100))
	}
}

func TestRandomParams(t *testing.T) {
	t.Parallel()
	if _, err := RandomFactory("r", []byte(`{"maxNumOfEndpoints":0}`), nil); err == nil {
		t.Error("maxNumOfEndpoints 0 accepted")
	}
	if _, err := RandomFactory("r", []byte(`{"bogus":1}`), nil); err == nil {
		t.Error("unknown parameter accepted")
	}
}
