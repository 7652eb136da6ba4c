package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/kvevents"
)

// TestCacheSaltKeysPrefixCache: a repeated prompt reports cached tokens
// only when it carries the same cache_salt as the earlier one, on both
// generation APIs.
func TestCacheSaltKeysPrefixCache(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	system := strings.Repeat("You are a careful assistant that answers routing questions briefly. ", 20)
	bodies := map[string]string{
		"/v1/chat/completions": fmt.Sprintf(`{"messages":[{"role":"system","content":%q},{"role":"user","content":"hi"}],"max_tokens":1`, system),
		"/v1/completions":      fmt.Sprintf(`{"prompt":%q,"max_tokens":1`, system+"chat"),
	}
	for path, body := range bodies {
		ask := func(salt string) int {
			t.Helper()
			b := body + "}"
			if salt != "" {
				b = fmt.Sprintf(`%s,"cache_salt":%q}`, body, salt)
			}
			r := post(t, c, inst.URL()+path, b)
			if r.status != http.StatusOK {
				t.Fatalf("%s salt %q: status %d: %s", path, salt, r.status, r.body)
			}
			return decode[chunk](t, r.body).Usage.Details.Cached
		}
		if got := ask("alice"); got != 0 {
			t.Fatalf("%s: first salted request cached %d tokens", path, got)
		}
		if got := ask("bob"); got != 0 {
			t.Errorf("%s: another salt cached %d tokens, want 0", path, got)
		}
		if got := ask(""); got != 0 {
			t.Errorf("%s: no salt cached %d tokens, want 0", path, got)
		}
		if got := ask("alice"); got == 0 {
			t.Errorf("%s: the same salt again cached nothing", path)
		}
		if got := ask(""); got == 0 {
			t.Errorf("%s: no salt again cached nothing", path)
		}
	}
}

func TestCacheSaltInvalid(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	for _, salt := range []string{`""`, `42`, `true`, `["a"]`, `{"a":1}`} {
		for _, path := range []string{"/v1/completions", "/v1/chat/completions"} {
			body := fmt.Sprintf(`{"prompt":"x","messages":[{"role":"user","content":"x"}],"cache_salt":%s}`, salt)
			r := post(t, c, inst.URL()+path, body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s cache_salt %s: status %d, want 400: %s", path, salt, r.status, r.body)
			}
			e := decode[wireError](t, r.body)
			if e.Error.Type != "BadRequestError" || e.Error.Param == nil || *e.Error.Param != "cache_salt" ||
				!strings.Contains(e.Error.Message, "'cache_salt' must be a non-empty string") {
				t.Errorf("%s cache_salt %s: error body %s", path, salt, r.body)
			}
		}
	}
	// null is no salt, as in vLLM.
	if r := post(t, c, inst.URL()+"/v1/completions", `{"prompt":"x","max_tokens":1,"cache_salt":null}`); r.status != http.StatusOK {
		t.Errorf("cache_salt null: status %d: %s", r.status, r.body)
	}
	if m := inst.EngineMetrics(); m.Waiting+m.Running != 0 {
		t.Errorf("rejected requests left work in the engine: %+v", m)
	}
}

// TestKVEventsCarryExtraKeys: what the publisher puts on the wire says, as
// vLLM's extra_keys do, which blocks a salt or an adapter keys: the
// adapter on every block, the salt on the prompt's first block only, and
// nothing for a base-model prompt without a salt.
func TestKVEventsCarryExtraKeys(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Capacity.BlockSize, cfg.LoRAs = 16, []string{"sql-lora"}
	inst, stored := kvEventsInstance(t, cfg)
	c := client(t)
	send := func(model string, prompt []uint32, salt string) {
		t.Helper()
		ids, _ := json.Marshal(prompt)
		body := fmt.Sprintf(`{"model":%q,"prompt":%s,"max_tokens":1`, model, ids)
		if salt != "" {
			body += fmt.Sprintf(`,"cache_salt":%q`, salt)
		}
		if r := post(t, c, inst.URL()+"/v1/completions", body+"}"); r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	}

	salted := func(keys ...string) *kvevents.ExtraKeys { return &kvevents.ExtraKeys{Strings: keys} }
	base := idRun(1000, 48)
	steps := []struct {
		name, model, salt string
		prompt            []uint32
		parent            bool
		want              []*kvevents.ExtraKeys
	}{
		{name: "salted", model: "sim-model", salt: "tenant-a", prompt: base,
			want: []*kvevents.ExtraKeys{salted("tenant-a"), nil, nil}},
		{name: "salted continuation", model: "sim-model", salt: "tenant-a", prompt: append(slices.Clone(base), idRun(2000, 32)...),
			parent: true, want: nil}, // its first blocks hit; the salt keyed them
		{name: "adapter", model: "sql-lora", prompt: base,
			want: []*kvevents.ExtraKeys{salted("sql-lora"), salted("sql-lora"), salted("sql-lora")}},
		{name: "salted adapter", model: "sql-lora", salt: "tenant-a", prompt: base,
			want: []*kvevents.ExtraKeys{salted("sql-lora", "tenant-a"), salted("sql-lora"), salted("sql-lora")}},
		{name: "base model, no salt", model: "sim-model", prompt: base, want: nil},
	}
	for _, st := range steps {
		send(st.model, st.prompt, st.salt)
		first := st.prompt[:16]
		if st.parent {
			first = st.prompt[48:64]
		}
		got := nextStored(t, stored, first)
		if got.HasParent != st.parent {
			t.Errorf("%s: HasParent %v, want %v", st.name, got.HasParent, st.parent)
		}
		if diff := cmp.Diff(st.want, got.ExtraKeys); diff != "" {
			t.Errorf("%s: ExtraKeys (-want +got):\n%s", st.name, diff)
		}
	}
}

// idRun returns n consecutive token IDs from first on.
func idRun(first uint32, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = first + uint32(i)
	}
	return out
}

// kvEventsInstance starts an instance publishing its KV events over
// ZeroMQ to a subscriber, and returns the BlockStored events the
// subscriber decodes, once the subscription is known to be live.
func kvEventsInstance(t *testing.T, cfg Config) (*Instance, <-chan *kvevents.BlockStored) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := kvevents.NewSubscriber(ctx, "tcp://127.0.0.1:0", "kv@", true)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	pub, err := NewKVEventPublisher(ctx, sub.Addr(), false)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg.KVEvents = pub
	inst := start(t, cfg)
	pub.SetTopic(KVEventTopic(inst.HostPort(), inst.Model()))
	stored := make(chan *kvevents.BlockStored, 1000)
	subDone, pubDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(subDone)
		_ = sub.Run(ctx, func(m kvevents.Message) {
			for _, ev := range m.Batch.Events {
				if s, ok := ev.(*kvevents.BlockStored); ok {
					stored <- s
				}
			}
		}, nil)
	}()
	go func() {
		defer close(pubDone)
		pub.Run(ctx, nil)
	}()
	t.Cleanup(func() {
		cancel()
		<-subDone
		<-pubDone
	})
	// A PUB socket drops what it sends before the subscription reaches it.
	c := client(t)
	for i := uint32(0); ; i++ {
		ids, _ := json.Marshal(idRun(90_000+i*100, 16))
		if r := post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%s,"max_tokens":1}`, ids)); r.status != http.StatusOK {
			t.Fatalf("warm-up: status %d: %s", r.status, r.body)
		}
		select {
		case <-stored:
			return inst, stored
		case <-time.After(50 * time.Millisecond):
			if i == 200 {
				t.Fatal("no KV event reached the subscriber")
			}
		}
	}
}

// nextStored returns the next stored run whose tokens start with first.
func nextStored(t *testing.T, stored <-chan *kvevents.BlockStored, first []uint32) *kvevents.BlockStored {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-stored:
			if len(s.TokenIDs) >= len(first) && slices.Equal(s.TokenIDs[:len(first)], first) {
				return s
			}
		case <-timeout:
			t.Fatalf("no BlockStored for tokens %v...", first[:min(3, len(first))])
		}
	}
}
