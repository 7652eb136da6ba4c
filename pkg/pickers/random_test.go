package pickers

import (
	"fmt"
	"testing"

	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestRandomConformance(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		plugintest.Picker(t, NewRandom("r", Params{MaxNumOfEndpoints: n}), plugintest.Request("m", 100))
	}
}

func TestRandomUniform(t *testing.T) {
	t.Parallel()
	scored := scoredOf(1, 0, 0.5, 0.2)
	const trials = 4000
	counts := countFirst(t, NewRandom("r", Params{MaxNumOfEndpoints: 2}), scored, trials)
	for i := range scored {
		name := fmt.Sprintf("e%d", i)
		near(t, name, counts[name], trials, 0.25)
	}
}

func BenchmarkRandomPicker(b *testing.B) {
	benchPicker(b, NewRandom("r", Params{MaxNumOfEndpoints: 1}))
}
