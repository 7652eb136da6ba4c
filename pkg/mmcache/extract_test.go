package mmcache

import (
	"slices"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/request"
)

const b64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"

// chat wraps content parts (JSON) in a chat completions body.
func chat(parts ...string) string {
	return `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"look"},` + strings.Join(parts, ",") + `]}]}`
}

func TestAppendItemsReadsEveryPartKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		api  request.API
		body string
		want int
	}{
		{"chat image URL", request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"https://x/a.png"}}`), 1},
		{"chat image data URL", request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + b64 + `","detail":"low"}}`), 1},
		{"chat image URL as a string", request.ChatCompletions, chat(`{"type":"image_url","image_url":"https://x/a.png"}`), 1},
		{"chat input_audio", request.ChatCompletions, chat(`{"type":"input_audio","input_audio":{"data":"` + b64 + `","format":"wav"}}`), 1},
		{"chat video_url", request.ChatCompletions, chat(`{"type":"video_url","video_url":{"url":"https://x/v.mp4"}}`), 1},
		{"chat audio_url", request.ChatCompletions, chat(`{"type":"audio_url","audio_url":{"url":"https://x/a.wav"}}`), 1},
		{"anthropic base64", request.Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + b64 + `"}},{"type":"text","text":"what"}]}]}`, 1},
		{"anthropic url", request.Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}`, 1},
		{"anthropic file", request.Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"file_1"}}]}]}`, 1},
		{"anthropic with a system prompt", request.Messages, `{"model":"m","max_tokens":1,"system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}`, 1},
		{"anthropic tool result", request.Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}]}`, 1},
		{"responses input_image", request.Responses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"https://x/a.png"}]}]}`, 1},
		{"responses input_image by file", request.Responses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"file_1"}]}]}`, 1},
		{"several items", request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"https://x/a.png"}}`, `{"type":"image_url","image_url":{"url":"https://x/b.png"}}`, `{"type":"video_url","video_url":{"url":"https://x/v.mp4"}}`), 3},
		{"text only", request.ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"hello"}]}`, 0},
		{"text parts only", request.ChatCompletions, chat(`{"type":"text","text":"more"}`), 0},
		{"completions", request.Completions, `{"model":"m","prompt":"{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/a.png\"}}"}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := items(t, tc.api, tc.body); len(got) != tc.want {
				t.Errorf("%d items %x, want %d", len(got), got, tc.want)
			}
		})
	}
}

// TestItemIdentity: an item is its kind and how it is referenced, the
// same whatever API or part form carries it; repeats count once.
func TestItemIdentity(t *testing.T) {
	t.Parallel()
	one := func(api request.API, body string) uint64 {
		t.Helper()
		got := items(t, api, body)
		if len(got) != 1 {
			t.Fatalf("%d items in %s, want 1", len(got), body)
		}
		return got[0]
	}
	chatURL := one(request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"https://x/a.png"}}`))
	if got := one(request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"https:\/\/x\/a.png"}}`)); got != chatURL {
		t.Error("an escaped URL is another item")
	}
	if got := one(request.Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}`); got != chatURL {
		t.Error("the same image URL in an Anthropic request is another item")
	}
	if got := one(request.Responses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/a.png"}]}]}`); got != chatURL {
		t.Error("the same image URL in a Responses request is another item")
	}
	inline := one(request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"data:image/png;base64,`+b64+`"}}`))
	if got := one(request.Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"`+b64+`"}}]}]}`); got != inline {
		t.Error("a data URL and an Anthropic base64 block of the same bytes are two items")
	}
	distinct := []uint64{
		chatURL, inline,
		one(request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"https://x/b.png"}}`)),
		one(request.ChatCompletions, chat(`{"type":"audio_url","audio_url":{"url":"https://x/a.png"}}`)),
		one(request.ChatCompletions, chat(`{"type":"video_url","video_url":{"url":"https://x/a.png"}}`)),
		one(request.ChatCompletions, chat(`{"type":"input_audio","input_audio":{"data":"`+b64+`","format":"wav"}}`)),
		one(request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"`+b64+`"}}`)), // a URL that spells the data
	}
	if slices.Sort(distinct); len(slices.Compact(distinct)) != 7 {
		t.Error("different kinds, references or contents share an item")
	}
	repeated := items(t, request.ChatCompletions, `{"model":"m","messages":[`+
		`{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}},{"type":"image_url","image_url":{"url":"https://x/a.png"}}]},`+
		`{"role":"assistant","content":"nice"},`+
		`{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}},{"type":"image_url","image_url":{"url":"https://x/b.png"}}]}]}`)
	if len(repeated) != 2 {
		t.Errorf("three references to one image and one to another are %d items, want 2", len(repeated))
	}
}

// TestMalformedPartsAreSkipped: parts that identify nothing give no item
// and no error; the well-formed parts beside them still count.
func TestMalformedPartsAreSkipped(t *testing.T) {
	t.Parallel()
	good := `{"type":"image_url","image_url":{"url":"https://x/ok.png"}}`
	for _, bad := range []string{
		`{"type":"image_url"}`,
		`{"type":"image_url","image_url":{}}`,
		`{"type":"image_url","image_url":{"url":""}}`,
		`{"type":"image_url","image_url":{"url":42}}`,
		`{"type":"image_url","image_url":null}`,
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,"}}`,
		`{"type":"input_audio","input_audio":{"format":"wav"}}`,
		`{"type":"input_audio","input_audio":"` + b64 + `"}`,
		`{"type":"image","source":{"type":"base64"}}`,
		`{"type":"image","source":{"type":"mystery","data":"x"}}`,
		`{"type":"image","source":"https://x/a.png"}`,
		`{"type":"input_image"}`,
		`{"type":["image_url"],"image_url":{"url":"https://x/a.png"}}`,
		`{"type":"hologram","hologram":{"url":"https://x/a.png"}}`,
		`{"image_url":{"url":"https://x/untyped.png"}}`,
	} {
		if got := items(t, request.ChatCompletions, chat(bad, good)); len(got) != 1 {
			t.Errorf("%s beside a good part: %d items, want 1", bad, len(got))
		}
	}
	// Bytes that are not JSON (request.Parse never passes such on) give
	// the items before the damage, and never a panic.
	full := chat(good, `{"type":"image_url","image_url":{"url":"https://x/b.png"}}`)
	for cut := range len(full) {
		prompt := []byte(full[:cut])
		if got := promptItems(prompt); len(got) > 2 {
			t.Fatalf("cut at %d: %d items", cut, len(got))
		}
	}
	for _, junk := range []string{`"image_url"`, `[{"type":"image_url","image_url":{"url":"https://x/a.png"}`, `{"type":"image_url",,}`, `]]]"image"`, `{"a":tru"image"}`} {
		_ = promptItems([]byte(junk))
	}
}

// TestTextOnlyRequestsAllocateNothing: the per-request cost for the
// common case is the marker scan.
func TestTextOnlyRequestsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not counted under -race")
	}
	body := parse(t, request.ChatCompletions, `{"model":"m","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":[{"type":"text","text":"`+strings.Repeat("words ", 2000)+`"}]}]}`)
	if n := testing.AllocsPerRun(100, func() { _ = AppendItems(nil, body) }); n != 0 {
		t.Errorf("%v allocations per text-only request, want 0", n)
	}
	media := parse(t, request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"data:image/png;base64,`+strings.Repeat(b64, 1000)+`"}}`))
	buf := make([]uint64, 0, 4)
	if n := testing.AllocsPerRun(100, func() { _ = AppendItems(buf[:0], media) }); n != 0 {
		t.Errorf("%v allocations extracting an inline image into a buffer with room, want 0", n)
	}
}

// promptItems reads a prompt's bytes as they are, as no parsed body
// would give them (request.Parse validates the JSON).
func promptItems(prompt []byte) []uint64 {
	return AppendItems(nil, &request.Body{API: request.ChatCompletions, Prompt: prompt})
}

func FuzzAppendItems(f *testing.F) {
	f.Add([]byte(chat(`{"type":"image_url","image_url":{"url":"https://x/a.png"}}`)))
	f.Add([]byte(`[{"type":"image","source":{"type":"base64","data":"` + b64 + `"}}]` + "\n" + `[{"type":"input_audio","input_audio":{"data":"a\"b"}}]`))
	f.Fuzz(func(t *testing.T, prompt []byte) {
		got := promptItems(prompt)
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("items not sorted and distinct: %x", got)
		}
	})
}

func BenchmarkAppendItems(b *testing.B) {
	image := parse(b, request.ChatCompletions, chat(`{"type":"image_url","image_url":{"url":"data:image/png;base64,`+strings.Repeat(b64, 20000)+`"}}`))
	text := parse(b, request.ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"`+strings.Repeat("words ", 20000)+`"}]}`)
	buf := make([]uint64, 0, 4)
	b.Run("inline-1MB-image", func(b *testing.B) {
		b.SetBytes(int64(len(image.Prompt)))
		for b.Loop() {
			buf = AppendItems(buf[:0], image)
		}
	})
	b.Run("text-120KB", func(b *testing.B) {
		b.SetBytes(int64(len(text.Prompt)))
		for b.Loop() {
			buf = AppendItems(buf[:0], text)
		}
	})
}

// TestItemModality: an item's hash carries its kind, llm-d's modality.
func TestItemModality(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		chat(`{"type":"image_url","image_url":{"url":"https://x/a.png"}}`):                         "image",
		chat(`{"type":"input_audio","input_audio":{"data":"` + b64 + `","format":"wav"}}`):         "audio",
		chat(`{"type":"audio_url","audio_url":{"url":"https://x/a.wav"}}`):                         "audio",
		chat(`{"type":"video_url","video_url":{"url":"https://x/v.mp4"}}`):                         "video",
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}`: "image",
	} {
		api := request.ChatCompletions
		if strings.Contains(body, "input_image") {
			api = request.Responses
		}
		got := items(t, api, body)
		if len(got) != 1 || request.MediaModality(got[0]) != want {
			t.Errorf("%s: items %x, want one %s", body, got, want)
		}
	}
}
