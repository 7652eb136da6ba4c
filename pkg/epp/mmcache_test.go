package epp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/mmcache"
)

// mmOnly routes by multimodal encoder-cache affinity alone: where a
// request goes depends only on where its images went (ties are random).
// The scorer's producer is created by the loader.
const mmOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: mm-embeddings-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: mm-embeddings-cache-scorer
`

// imageData is the base64 of a distinct fake image for i.
func imageData(i int) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "\x89PNG fake image number %d", i))
}

// chatWithImages is a chat completions body asking question about images
// (URLs, or data: URLs).
func chatWithImages(model, question string, urls ...string) string {
	content := []map[string]any{{"type": "text", "text": question}}
	for _, u := range urls {
		content = append(content, map[string]any{"type": "image_url", "image_url": map[string]any{"url": u}})
	}
	b, _ := json.Marshal(map[string]any{"model": model, "max_tokens": 2, "messages": []map[string]any{{"role": "user", "content": content}}})
	return string(b)
}

// routeAt routes body posted to path and returns the chosen endpoint, or
// "" when the EPP answered itself (no endpoint yet).
func (r *running) routeAt(path, body string) string {
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: path,
		Headers: map[string][]string{"content-type": {"application/json"}}, Body: []byte(body)})
	if err != nil || d.Immediate != nil || len(d.Endpoints) == 0 {
		return ""
	}
	return d.Endpoints[0]
}

// TestMultimodalAffinityFollowsImages runs the two llm-d multimodal
// plugins over eight simulated servers: a request carrying an image goes
// where the image went before, whatever its text (five images agreeing by
// chance: 1 in 8⁵), also when an Anthropic request carries the same bytes;
// new images, on which no server has an edge, spread over the servers.
func TestMultimodalAffinityFollowsImages(t *testing.T) {
	t.Parallel()
	r := launchEPP(t, 8, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-text", mmOnly}
	})
	model := r.sims[0].Model()
	const chatPath = "/v1/chat/completions"
	images := make([]string, 5)
	picks := make([]string, len(images))
	for i := range images {
		images[i] = fmt.Sprintf("https://images.example/%d.png", i)
		if i%2 == 0 {
			images[i] = "data:image/png;base64," + imageData(i)
		}
		first := chatWithImages(model, "what is in this picture?", images[i])
		eventually(t, "the EPP to see its servers", func() bool { picks[i] = r.routeAt(chatPath, first); return picks[i] != "" })
	}
	for i, img := range images {
		if got := r.routeAt(chatPath, chatWithImages(model, fmt.Sprintf("and what colour is it? (%d)", i), img)); got != picks[i] {
			t.Errorf("image %d: the second request went to %s, the first to %s", i, got, picks[i])
		}
	}
	anthropic, _ := json.Marshal(map[string]any{"model": model, "max_tokens": 2, "messages": []map[string]any{{"role": "user", "content": []map[string]any{
		{"type": "image", "source": map[string]any{"type": "base64", "media_type": "image/png", "data": imageData(0)}},
		{"type": "text", "text": "describe it"},
	}}}})
	if got := r.routeAt("/v1/messages", string(anthropic)); got != picks[0] {
		t.Errorf("an Anthropic request with image 0's bytes went to %s, image 0 to %s", got, picks[0])
	}
	// Images 0 and 1, as one request: it goes where one of them went.
	if got := r.routeAt(chatPath, chatWithImages(model, "compare", images[0], images[1])); got != picks[0] && got != picks[1] {
		t.Errorf("a request with images 0 and 1 went to %s, neither %s nor %s", got, picks[0], picks[1])
	}
	// Fresh images tie everywhere: twelve of them all on one server would
	// be a 1 in 8¹¹ chance.
	used := map[string]bool{}
	for i := range 12 {
		used[r.routeAt(chatPath, chatWithImages(model, "new", fmt.Sprintf("https://images.example/fresh-%d.png", i)))] = true
	}
	if len(used) < 2 {
		t.Errorf("twelve new images all went to %v", used)
	}
	var state struct {
		Plugins map[string]struct {
			Type  string                `json:"type"`
			State mmcache.ProducerState `json:"state"`
		} `json:"plugins"`
	}
	r.debugJSON(t, pluginStatePath, &state)
	st, ok := state.Plugins[mmcache.ProducerType]
	if !ok || st.Type != mmcache.ProducerType || st.State.Items < len(images)+12 || st.State.CapacityItemsPerServer != 2048*16384 {
		t.Errorf("plugin state of the auto-created producer: %+v (present %v)", st, ok)
	}
}

// TestReplicasShareMultimodalItems: replica B hears where replica A sent
// each image and sends the image's next request there too (without the
// sync B would pick at random: all five agreeing by chance is 1 in 8⁵).
func TestReplicasShareMultimodalItems(t *testing.T) {
	t.Parallel()
	a, b, _ := launchReplicaPair(t, mmOnly)
	model := b.sims[0].Model()
	const chatPath = "/v1/chat/completions"
	picks := make([]string, 5)
	for i := range picks {
		body := chatWithImages(model, "what is this?", "data:image/jpeg;base64,"+imageData(100+i))
		eventually(t, "A to see its servers", func() bool { picks[i] = a.routeAt(chatPath, body); return picks[i] != "" })
	}
	eventually(t, "B to apply A's decisions", func() bool {
		return counterValue(b.metricsPage(t), "openepp_replica_sync_applied_insertions_total") >= float64(len(picks))
	})
	for i, want := range picks {
		body := chatWithImages(model, "tell me more", "data:image/jpeg;base64,"+imageData(100+i))
		if got := b.routeAt(chatPath, body); got != want {
			t.Errorf("image %d: B routed to %s, A to %s", i, got, want)
		}
	}
}
