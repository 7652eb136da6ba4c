package epp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/openepp/openepp/pkg/extproc"
)

// burstOnly places requests by llm-d's burst window alone.
const burstOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: burst-prefix-cache-producer
  parameters:
    windowDurationMs: 1500
- type: prefix-cache-scorer
  parameters:
    prefixMatchInfoProducerName: burst-prefix-cache-producer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
`

// TestBurstPlacesSamplesTogether sends three prompts' eight samples each
// at once through the EPP: the window (long, so that a loaded machine still
// starts them all within it) places each prompt's samples on one
// server (by chance, a prompt's eight landing together is 1 in 4⁷).
func TestBurstPlacesSamplesTogether(t *testing.T) {
	t.Parallel()
	r := launchEPP(t, 4, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-text", burstOnly}
	})
	model := r.sims[0].Model()
	eventually(t, "the EPP to see its servers", func() bool {
		return r.routeAt("/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"warm up","max_tokens":1}`, model)) != ""
	})
	var mu sync.Mutex
	placed := map[int]map[string]int{}
	var wg sync.WaitGroup
	for p := range 3 {
		placed[p] = map[string]int{}
		text := strings.Repeat(fmt.Sprintf("Rollout problem %d: prove the statement step by step. ", p), 30)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
					Headers: map[string][]string{"content-type": {"application/json"}},
					Body:    []byte(fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":1}`, model, text))})
				if err != nil || len(d.Endpoints) == 0 {
					t.Errorf("prompt %d: %v", p, err)
					return
				}
				mu.Lock()
				placed[p][d.Endpoints[0]]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for p, where := range placed {
		if len(where) != 1 {
			t.Errorf("prompt %d's samples went to %v, want one server", p, where)
		}
	}
}
