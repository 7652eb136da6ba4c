package sim

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// imageMark stands for an image's placeholders in an expected rendering.
const imageMark = "\x00image\x00"

// countWithImages is the token count of an expected rendering whose images
// are written as imageMark.
func countWithImages(rendering string) int {
	parts := strings.Split(rendering, imageMark)
	n := (len(parts) - 1) * imagePlaceholders
	for _, p := range parts {
		n += tokenize.Count(p)
	}
	return n
}

// imageChat is a chat body whose user turn is text and then, if url is not
// empty, an image.
func imageChat(text, url string) string {
	parts := fmt.Sprintf(`{"type":"text","text":%q}`, text)
	if url != "" {
		parts += fmt.Sprintf(`,{"type":"image_url","image_url":{"url":%q}}`, url)
	}
	return `{"model":"sim-model","max_tokens":1,"messages":[{"role":"system","content":"You describe pictures for a visually impaired reader, carefully and in plain words."},` +
		`{"role":"user","content":[` + parts + `]}]}`
}

// firstPlaceholder is the index of the first placeholder in tokens, -1 if
// none.
func firstPlaceholder(tokens []uint32) int { return slices.IndexFunc(tokens, tokenize.Reserved) }

// TestImageChatCaching: an image adds its placeholders to the prompt; the
// same image after the same text hits the cache through the image, and a
// different one only up to the block where the image starts.
func TestImageChatCaching(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Capacity.BlockSize = 16
	inst := start(t, cfg)
	c := client(t)
	const text = "What is in this picture, and what colour is the car?"
	ask := func(body string) (prompt, cached int) {
		t.Helper()
		r := post(t, c, inst.URL()+"/v1/chat/completions", body)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		u := decode[chunk](t, r.body).Usage
		return u.Prompt, u.Details.Cached
	}
	ids := decode[tokenizeReply](t, post(t, c, inst.URL()+"/tokenize", imageChat(text, "https://example.com/cat.png")).body).Tokens
	imageAt := firstPlaceholder(ids)
	if imageAt < 16 {
		t.Fatalf("image starts at token %d; the test wants a full text block before it", imageAt)
	}
	textBlocks := imageAt / 16 * 16 // the tokens of the blocks before the image's first
	textOnly, _ := ask(imageChat(text, ""))
	withImage, cached := ask(imageChat(text, "https://example.com/cat.png"))
	if withImage != textOnly+imagePlaceholders || withImage != len(ids) {
		t.Errorf("prompt_tokens with an image = %d, want %d + %d (tokenize: %d)", withImage, textOnly, imagePlaceholders, len(ids))
	}
	if cached != textBlocks {
		t.Errorf("first image request cached %d tokens, want the text-only prompt's %d", cached, textBlocks)
	}
	if _, again := ask(imageChat(text, "https://example.com/cat.png")); again != (withImage-1)/16*16 {
		t.Errorf("same image again cached %d tokens, want %d", again, (withImage-1)/16*16)
	}
	if _, other := ask(imageChat(text, "https://example.com/dog.png")); other != textBlocks {
		t.Errorf("another image cached %d tokens, want the %d before its first block", other, textBlocks)
	}
}

// TestMediaPlaceholders: every media part type renders as its kind's
// placeholders where it stands, a data: URL is the same item as its
// payload sent inline, and token strings name the placeholders.
func TestMediaPlaceholders(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	tokens := func(content string) tokenizeReply {
		t.Helper()
		r := post(t, c, inst.URL()+"/tokenize", `{"return_token_strs":true,"messages":[{"role":"user","content":[`+content+`]}]}`)
		if r.status != http.StatusOK {
			t.Fatalf("tokenize %s: %d %s", content, r.status, r.body)
		}
		return decode[tokenizeReply](t, r.body)
	}
	base := tokens(`{"type":"text","text":"Look."}`).Count
	for _, tc := range []struct {
		part string
		want int
	}{
		{`{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}`, imagePlaceholders},
		{`{"type":"image_url","image_url":"https://example.com/a.png"}`, imagePlaceholders},
		{`{"type":"video_url","video_url":{"url":"https://example.com/a.mp4"}}`, videoPlaceholders},
		{`{"type":"audio_url","audio_url":{"url":"https://example.com/a.wav"}}`, audioPlaceholders},
		{`{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}`, audioPlaceholders},
	} {
		got := tokens(`{"type":"text","text":"Look."},` + tc.part)
		if got.Count != base+tc.want {
			t.Errorf("%s: %d tokens, want %d + %d", tc.part, got.Count, base, tc.want)
		}
		if got.TokenStrs == nil || len(*got.TokenStrs) != got.Count {
			t.Errorf("%s: token_strs %v for %d tokens", tc.part, got.TokenStrs, got.Count)
		}
	}
	// The object and bare-string forms name the same item; the item sits
	// between the text parts around it.
	obj := tokens(`{"type":"text","text":"A"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"text","text":"B"}`)
	bare := tokens(`{"type":"text","text":"A"},{"type":"image_url","image_url":"https://x/y.png"},{"type":"text","text":"B"}`)
	if !cmp.Equal(obj.Tokens, bare.Tokens) {
		t.Errorf("object and bare-string image_url differ")
	}
	at := firstPlaceholder(obj.Tokens)
	if strs := *obj.TokenStrs; at < 1 || strs[at-1] != "A" || strs[at] != "<|image|>" || strs[at+imagePlaceholders] != "B" {
		t.Errorf("image not between its text parts: %q", strs)
	}
	png := tokens(`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}`)
	jpeg := tokens(`{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,iVBORw0KGgo="}}`)
	other := tokens(`{"type":"image_url","image_url":{"url":"data:image/png;base64,R0lGODlh"}}`)
	if !cmp.Equal(png.Tokens, jpeg.Tokens) || cmp.Equal(png.Tokens, other.Tokens) {
		t.Errorf("data URLs: same payload equal %v, other payload equal %v", cmp.Equal(png.Tokens, jpeg.Tokens), cmp.Equal(png.Tokens, other.Tokens))
	}
	// Text never tokenizes into the placeholders' range.
	if firstPlaceholder(tokens(`{"type":"text","text":"Look at <|image|> here."}`).Tokens) >= 0 {
		t.Errorf("text produced a placeholder ID")
	}
}

// TestMediaPartErrors: a media part without what identifies its item is a
// 400 naming the part, on every endpoint that renders chats; an unknown
// part type still is one.
func TestMediaPartErrors(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	for _, tc := range []struct{ part, want string }{
		{`{"type":"image_url"}`, "part 1: image_url is required"},
		{`{"type":"image_url","image_url":{}}`, "part 1: image_url.url is required"},
		{`{"type":"image_url","image_url":{"url":""}}`, "part 1: image_url.url is required"},
		{`{"type":"image_url","image_url":5}`, "part 1: image_url must be an object with a url, or a URL"},
		{`{"type":"image_url","image_url":{"url":"data:image/png;base64,"}}`, "part 1: image_url.url: data URL holds no data"},
		{`{"type":"video_url","video_url":{"url":7}}`, "part 1: video_url.url: must be a string, got number"},
		{`{"type":"audio_url","audio_url":{"detail":"x"}}`, "part 1: audio_url.url is required"},
		{`{"type":"input_audio","input_audio":{"format":"wav"}}`, "part 1: input_audio.data is required"},
		{`{"type":"input_audio","input_audio":{"data":"UklGRg=="}}`, "part 1: input_audio.format is required"},
		{`{"type":"file","file":{"file_id":"f"}}`, `part 1: unsupported type "file"`},
	} {
		messages := `"messages":[{"role":"user","content":[{"type":"text","text":"Look."},` + tc.part + `]}]`
		for _, path := range []string{"/v1/chat/completions", "/tokenize", "/v1/chat/completions/render"} {
			r := post(t, c, inst.URL()+path, `{"max_tokens":1,`+messages+`}`)
			if r.status != http.StatusBadRequest || !strings.Contains(errorMessage(t, r.body), "messages[0].content: "+tc.want) {
				t.Errorf("%s %s: %d %s, want 400 %q", path, tc.part, r.status, r.body, tc.want)
			}
		}
	}
}

// TestAnthropicImage: image blocks, by base64 data or URL, render as
// placeholders on the Messages API too, the same item as the chat API's
// image_url with that data or URL; a source without its data or URL is a
// 400 naming the field.
func TestAnthropicImage(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	anthropic := func(source string) string {
		return `{"model":"sim-model","max_tokens":1,"messages":[{"role":"user","content":[` +
			`{"type":"text","text":"Look"},{"type":"image","source":` + source + `},{"type":"text","text":"here"}]}]}`
	}
	placeholders := func(ids []uint32) []uint32 {
		return slices.DeleteFunc(slices.Clone(ids), func(id uint32) bool { return !tokenize.Reserved(id) })
	}
	for _, tc := range []struct{ source, url string }{
		{`{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}`, "data:image/png;base64,iVBORw0KGgo="},
		{`{"type":"url","url":"https://example.com/cat.png"}`, "https://example.com/cat.png"},
	} {
		body := anthropic(tc.source)
		r := post(t, c, inst.URL()+"/v1/messages/render", body)
		if r.status != http.StatusOK {
			t.Fatalf("render %s: %d %s", tc.source, r.status, r.body)
		}
		ids := decode[wireRendered](t, r.body).TokenIDs
		want := "<|im_start|>user\nLook\n" + imageMark + "\nhere<|im_end|>\n<|im_start|>assistant\n"
		if len(ids) != countWithImages(want) {
			t.Errorf("%s: %d tokens, want %d", tc.source, len(ids), countWithImages(want))
		}
		if got := postMessage(t, c, inst, body); got.prompt() != len(ids) {
			t.Errorf("%s: messages usage %+v, render gave %d tokens", tc.source, got.Usage, len(ids))
		}
		chat := post(t, c, inst.URL()+"/v1/chat/completions/render",
			fmt.Sprintf(`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":%q}}]}]}`, tc.url))
		if p := placeholders(decode[wireRendered](t, chat.body).TokenIDs); len(p) != imagePlaceholders || !cmp.Equal(p, placeholders(ids)) {
			t.Errorf("%s: the chat API's image_url %s gives other placeholders", tc.source, tc.url)
		}
	}
	for source, want := range map[string]string{
		`null`:                            "messages[0].content[1].source: field required",
		`{"type":"base64","data":""}`:     "messages[0].content[1].source.data: field required",
		`{"type":"url"}`:                  "messages[0].content[1].source.url: field required",
		`{"data":"AA"}`:                   "messages[0].content[1].source.type: field required",
		`{"type":"file","file_id":"f_1"}`: `messages[0].content[1].source.type: must be "base64" or "url", got "file"`,
		`{"type":"base64","data":5}`:      "messages[0].content[1].source.data: must be a string, got number",
	} {
		for _, path := range []string{"/v1/messages", "/v1/messages/count_tokens"} {
			r := post(t, c, inst.URL()+path, anthropic(source))
			if r.status != http.StatusBadRequest || !strings.Contains(errorMessage(t, r.body), want) {
				t.Errorf("%s source %s: %d %s, want 400 %q", path, source, r.status, r.body, want)
			}
		}
	}
}

// errorMessage reads the message of an OpenAI- or Anthropic-shaped error.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	return decode[struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}](t, body).Error.Message
}

// mediaKey is one decoded multimodal extra key.
type mediaKey struct {
	ID     string
	Offset int
}

// decodeMediaKeys reads the [identifier, offset] arrays of an opaque
// extra-keys entry.
func decodeMediaKeys(t *testing.T, opaque []byte) []mediaKey {
	t.Helper()
	var out []mediaKey
	r := bytes.NewReader(opaque)
	dec := msgpack.NewDecoder(r)
	for r.Len() > 0 {
		n, err := dec.DecodeArrayLen()
		if err != nil || n != 2 {
			t.Fatalf("extra key: array of %d (%v), want 2", n, err)
		}
		var k mediaKey
		if k.ID, err = dec.DecodeString(); err != nil {
			t.Fatal(err)
		}
		if k.Offset, err = dec.DecodeInt(); err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// TestKVEventsMarkMediaBlocks: what the publisher puts on the wire marks,
// as vLLM's extra_keys do, each block holding an image's placeholders with
// the image's identifier and where it starts relative to the block, and
// leaves text-only blocks unmarked.
func TestKVEventsMarkMediaBlocks(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Capacity.BlockSize = 16
	inst, stored := kvEventsInstance(t, cfg)
	c := client(t)
	const url = "https://example.com/kv.png"
	body := imageChat("Which blocks hold this image?", url)
	prompt := decode[wireRendered](t, post(t, c, inst.URL()+"/v1/chat/completions/render", body).body).TokenIDs
	if r := post(t, c, inst.URL()+"/v1/chat/completions", body); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := nextStored(t, stored, prompt[:16])
	if got.HasParent || len(got.BlockHashes) != len(prompt)/16 || len(got.ExtraKeys) != len(got.BlockHashes) {
		t.Fatalf("stored %d blocks (parent %v) with %d extra keys; prompt has %d tokens",
			len(got.BlockHashes), got.HasParent, len(got.ExtraKeys), len(prompt))
	}
	id := fmt.Sprintf("%016x", newMediaItem(mediaImage, refURL, url).hash)
	imageAt := firstPlaceholder(prompt)
	for b, keys := range got.ExtraKeys {
		start, end := b*16, (b+1)*16
		holds := start < imageAt+imagePlaceholders && imageAt < end
		switch {
		case !holds && keys != nil:
			t.Errorf("text block %d has extra keys %+v", b, keys)
		case holds && (keys == nil || len(keys.Strings)+len(keys.Ints) != 0):
			t.Errorf("image block %d: extra keys %+v, want one opaque item", b, keys)
		case holds:
			if diff := cmp.Diff([]mediaKey{{ID: id, Offset: imageAt - start}}, decodeMediaKeys(t, keys.Opaque)); diff != "" {
				t.Errorf("image block %d (-want +got):\n%s", b, diff)
			}
		}
	}
}

// TestMediaKeysFromPlaceholders: the publisher finds items from the IDs
// alone: adjacent items, an item entering the run from an earlier block,
// and an item crossing blocks, each keyed on every block it overlaps.
func TestMediaKeysFromPlaceholders(t *testing.T) {
	t.Parallel()
	img := newMediaItem(mediaImage, refURL, "https://example.com/a.png")
	audio := newMediaItem(mediaAudio, refData, "UklGRg==")
	hex := func(m mediaItem) string { return fmt.Sprintf("%016x", m.hash) }
	// 5 text tokens, an image, the same image again, 3 text tokens, then
	// the audio's first 24 tokens: 5+64+64+3+24 = 160 tokens, 10 blocks.
	toks := idRun(1, 5)
	toks = img.appendTokens(toks)
	toks = img.appendTokens(toks)
	toks = append(toks, 7, 8, 9)
	toks = audio.appendTokens(toks)[:160]
	keys := mediaKeys(toks, 16, 10)
	decoded := make([][]mediaKey, len(keys))
	for b, k := range keys {
		if k != nil {
			decoded[b] = decodeMediaKeys(t, k)
		}
	}
	image := func(off int) mediaKey { return mediaKey{hex(img), off} }
	want := [][]mediaKey{
		{image(5)}, {image(-11)}, {image(-27)}, {image(-43)},
		{image(-59), image(5)}, {image(-11)}, {image(-27)}, {image(-43)},
		{image(-59), {hex(audio), 8}}, {{hex(audio), -8}},
	}
	if diff := cmp.Diff(want, decoded); diff != "" {
		t.Errorf("media keys (-want +got):\n%s", diff)
	}
	// A run starting inside an item offsets it before the run's first
	// block; a run of text alone has none.
	if got := decodeMediaKeys(t, mediaKeys(toks[32:48], 16, 1)[0]); !cmp.Equal(got, []mediaKey{image(-27)}) {
		t.Errorf("run starting inside the image: %+v", got)
	}
	if mediaKeys(idRun(1, 32), 16, 2) != nil {
		t.Error("text-only run has media keys")
	}
	if ek := extraKeys(10, false, "", "", keys); ek[0] == nil || ek[0].Opaque == nil || ek[0].Strings != nil {
		t.Errorf("extraKeys did not carry media: %+v", ek[0])
	}
}

// TestEncoderCostOverHTTP: with an encoder priced, a server encodes an
// image once; the same image behind another text prefix (which the prefix
// cache cannot cover) is found in its encoder cache, and a different image
// is encoded again. Without a price no span is marked at all.
func TestEncoderCostOverHTTP(t *testing.T) {
	t.Parallel()
	c := client(t)
	priced := start(t, Config{Profile: "fast", Latency: Latency{EncodeTimePerToken: Ptr(10 * time.Microsecond)},
		Capacity: Capacity{EncoderCacheTokens: 4 * imagePlaceholders}})
	for i, url := range []string{"https://img.example/a.png", "https://img.example/a.png", "https://img.example/b.png"} {
		if r := post(t, c, priced.URL()+"/v1/chat/completions", imageChat(fmt.Sprintf("user %d asks about this.", i), url)); r.status != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, r.status, r.body)
		}
	}
	if m := priced.EngineMetrics(); m.EncoderHits != 1 || m.EncoderMisses != 2 {
		t.Errorf("encoder hits/misses %d/%d, want 1/2", m.EncoderHits, m.EncoderMisses)
	}
	free := start(t, Config{Profile: "fast"})
	post(t, c, free.URL()+"/v1/chat/completions", imageChat("a question.", "https://img.example/a.png"))
	if m := free.EngineMetrics(); m.EncoderHits != 0 || m.EncoderMisses != 0 {
		t.Errorf("without an encoder price: hits/misses %d/%d, want none", m.EncoderHits, m.EncoderMisses)
	}
}

// TestMediaSpansFromTokens: each item's placeholders become one span with
// the item's full hash, adjacent copies of one item two spans.
func TestMediaSpansFromTokens(t *testing.T) {
	t.Parallel()
	img := newMediaItem(mediaImage, refURL, "https://img.example/a.png")
	toks := tokenize.Append(nil, "look at")
	start := len(toks)
	toks = img.appendTokens(toks)
	toks = img.appendTokens(toks)
	toks = tokenize.Append(toks, "twice")
	want := []engine.Media{{ID: img.hash, Offset: start, Tokens: imagePlaceholders},
		{ID: img.hash, Offset: start + imagePlaceholders, Tokens: imagePlaceholders}}
	if diff := cmp.Diff(want, mediaSpans(toks)); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	if got := mediaSpans(tokenize.Append(nil, "no media here")); got != nil {
		t.Errorf("text-only prompt: spans %v", got)
	}
}
