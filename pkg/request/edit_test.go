package request

import (
	"encoding/json"
	"strconv"
	"testing"
)

func TestEdited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		api  API
		body string
		edit Edit
		want string
	}{
		{"nothing", Completions, `{"model":"m","prompt":"p"}`, Edit{}, `{"model":"m","prompt":"p"}`},
		{"priority added", Completions, `{"model":"m","prompt":"p"}`, Edit{SetPriority: true, Priority: -7},
			`{"priority":-7,"model":"m","prompt":"p"}`},
		{"client priority replaced", ChatCompletions, `{"model":"m", "priority" : 5 ,"messages":[{"role":"user","content":"x"}]}`,
			Edit{SetPriority: true, Priority: 10}, `{"model":"m", "priority" : 10 ,"messages":[{"role":"user","content":"x"}]}`},
		{"wrong-typed priority replaced", Completions, `{"priority":"high","model":"m","prompt":"p"}`,
			Edit{SetPriority: true}, `{"priority":0,"model":"m","prompt":"p"}`},
		{"last duplicate replaced", Completions, `{"priority":1,"model":"m","prompt":"p","priority":2}`,
			Edit{SetPriority: true, Priority: 3}, `{"priority":1,"model":"m","prompt":"p","priority":3}`},
		{"model and priority", Completions, `{"prompt":"p","priority":1,"model":"m"}`,
			Edit{Model: "n", SetPriority: true, Priority: 2}, `{"prompt":"p","priority":2,"model":"n"}`},
		{"generate gets both", Generate, ` { "token_ids":[1,2]}`, Edit{Model: "n", SetPriority: true, Priority: 4},
			` {"model":"n","priority":4, "token_ids":[1,2]}`},
		{"sglang model untouched", SGLangGenerate, `{"text":"hi"}`, Edit{Model: "n", SetPriority: true, Priority: 9},
			`{"priority":9,"text":"hi"}`},
		{"sglang batch priorities kept", SGLangGenerate, `{"text":["a","b"],"priority":[1,2]}`, Edit{SetPriority: true, Priority: 9},
			`{"text":["a","b"],"priority":[1,2]}`},
		{"other API untouched", Other, `{"model":"m"}`, Edit{SetPriority: true, Priority: 9}, `{"model":"m"}`},
		{"stream usage added", ChatCompletions, `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`, Edit{IncludeUsage: true},
			`{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`},
		{"stream usage set, other options kept", Completions, `{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":false},"prompt":"p"}`,
			Edit{IncludeUsage: true}, `{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":true},"prompt":"p"}`},
		{"null stream options", Completions, `{"model":"m","stream":true,"stream_options":null,"prompt":"p"}`,
			Edit{IncludeUsage: true}, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"prompt":"p"}`},
		{"stream usage already asked", Completions, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"prompt":"p"}`,
			Edit{IncludeUsage: true}, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"prompt":"p"}`},
		{"not streamed", Completions, `{"model":"m","prompt":"p"}`, Edit{IncludeUsage: true}, `{"model":"m","prompt":"p"}`},
		{"not an OpenAI completion", Messages, `{"model":"m","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}`,
			Edit{IncludeUsage: true}, `{"model":"m","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Parse(tc.api, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			got := b.Edited(tc.edit)
			if string(got) != tc.want {
				t.Errorf("Edited = %s, want %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("Edited gave invalid JSON %s", got)
			}
			if string(b.Raw) != tc.body {
				t.Errorf("Edited modified the original body")
			}
		})
	}
}

func TestEditedEmptyObject(t *testing.T) {
	t.Parallel()
	// Other bodies are never edited; an empty object is reachable through
	// the unexported path only, which added members must keep valid.
	for _, n := range []int{1, 2} {
		edits := []memberEdit{{key: "a", value: []byte("1")}, {key: "b", value: []byte("2")}}[:n]
		got := applyEdits([]byte(` { } `), edits)
		if !json.Valid(got) {
			t.Errorf("%d members added to an empty object: invalid %s", n, got)
		}
	}
}

func FuzzEdited(f *testing.F) {
	f.Add(`{"model":"m","prompt":"p","priority":3}`, -2)
	f.Add(`{"prompt":"p", "model":"m"}`, 0)
	f.Add(`{"prompt":"p","model":"m","stream":true,"stream_options":{"x":[1]}}`, 1)
	f.Fuzz(func(t *testing.T, body string, priority int) {
		b, err := Parse(Completions, []byte(body))
		if err != nil {
			return
		}
		lacked := b.LacksStreamUsage()
		got := b.Edited(Edit{Model: "x", SetPriority: true, Priority: priority, IncludeUsage: true})
		// A map matches keys exactly (engines' JSON is case-sensitive) and
		// keeps the last of duplicate members, as Parse does.
		var v map[string]json.RawMessage
		if err := json.Unmarshal(got, &v); err != nil {
			t.Fatalf("Edited(%s) = %s: %v", body, got, err)
		}
		if string(v["model"]) != `"x"` || string(v["priority"]) != strconv.Itoa(priority) {
			t.Fatalf("Edited(%s) = %s: model %s priority %s", body, got, v["model"], v["priority"])
		}
		if again, err := Parse(Completions, got); lacked && (err != nil || !again.IncludeUsage) {
			t.Fatalf("Edited(%s) = %s: stream usage not asked for (%v)", body, got, err)
		}
	})
}
