package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// Multimodal items. The simulator never fetches or decodes media: an
// image, audio clip or video becomes a fixed number of placeholder tokens
// where it sits in the prompt, as a vision or audio model's processor
// expands it. vLLM repeats one placeholder ID and keys the blocks holding
// an item by the item's hash (an extra key); the simulator folds that hash
// into the placeholder IDs themselves, so the engine's block hashes, which
// hash token IDs only, tell two items apart with no engine change.
//
// Placeholder IDs lie in tokenize's reserved range, which text never
// yields: item token p (0 ≤ p < count) is
//
//	tokenize.ReservedBase + p<<8 | byte p mod 8 of the item's hash
//
// so an ID alone tells a KV event subscriber that it is a placeholder, its
// place in its item (hence where the item starts) and one byte of the
// item's hash; eight consecutive ones give the whole hash.

// Placeholder tokens per item. A real model's count depends on the model
// and on the media's size (Qwen2-VL spends one token per 28×28 pixels); the
// simulator uses one count per kind.
const (
	imagePlaceholders = 64
	audioPlaceholders = 32
	videoPlaceholders = 128
)

// The largest count must fit the layout's 128 positions; a larger one
// overflows here and fails the build.
const _ = uint8(128 - videoPlaceholders)

// mediaKind is what an item is; the byte values are those of the EPP's
// media hashes (package request), so an item's hash here is the one
// mm-embeddings-cache-producer computes for it.
type mediaKind byte

const (
	mediaImage mediaKind = 'i'
	mediaAudio mediaKind = 'a'
	mediaVideo mediaKind = 'v'
)

// How a request references an item, as the EPP tells them apart: by URL,
// or by inline base64 data (a data: URL's payload or a bare data field).
const (
	refURL  byte = 'u'
	refData byte = 'd'
)

// mediaItem is one item of a prompt.
type mediaItem struct {
	kind mediaKind
	hash uint64 // of kind, reference and URL or data
}

func newMediaItem(kind mediaKind, ref byte, id string) mediaItem {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write([]byte{byte(kind), ref})
	_, _ = d.WriteString(id)
	return mediaItem{kind: kind, hash: d.Sum64()}
}

// mediaAt is the item at a URL; a data: URL is its base64 payload, the
// same item as that payload sent inline.
func mediaAt(kind mediaKind, url string) (mediaItem, error) {
	if len(url) >= 5 && strings.EqualFold(url[:5], "data:") {
		_, payload, _ := strings.Cut(url, ",")
		if payload == "" {
			return mediaItem{}, errors.New("data URL holds no data")
		}
		return newMediaItem(kind, refData, payload), nil
	}
	return newMediaItem(kind, refURL, url), nil
}

func (m mediaItem) placeholders() int {
	switch m.kind {
	case mediaAudio:
		return audioPlaceholders
	case mediaVideo:
		return videoPlaceholders
	}
	return imagePlaceholders
}

func (m mediaItem) appendTokens(dst []uint32) []uint32 {
	for p := range m.placeholders() {
		dst = append(dst, tokenize.ReservedBase+(uint32(p)<<8|uint32(byte(m.hash>>(8*(p%8))))))
	}
	return dst
}

// placeholderString is what /tokenize shows for each placeholder token.
func (m mediaItem) placeholderString() string {
	switch m.kind {
	case mediaAudio:
		return "<|audio|>"
	case mediaVideo:
		return "<|video|>"
	}
	return "<|image|>"
}

// placeholder decodes a token ID: its position in its item and the byte
// of the item's hash it carries; ok is false for a text token.
func placeholder(id uint32) (pos int, hashByte byte, ok bool) {
	if !tokenize.Reserved(id) {
		return 0, 0, false
	}
	off := id - tokenize.ReservedBase
	return int(off >> 8), byte(off), true
}

// promptText is a prompt being rendered: text with media items at their
// places. The text between two items tokenizes as one string, so a prompt
// without media gets exactly the IDs of its text.
type promptText struct {
	segs []promptSeg
	tail strings.Builder // the text after the last item
}

// promptSeg is an item and the text before it.
type promptSeg struct {
	text string
	item mediaItem
}

func (b *promptText) WriteString(s string) { b.tail.WriteString(s) }

func (b *promptText) writeItem(m mediaItem) {
	b.segs = append(b.segs, promptSeg{text: b.tail.String(), item: m})
	b.tail.Reset()
}

// writePrompt appends o's text and items.
func (b *promptText) writePrompt(o *promptText) {
	for _, s := range o.segs {
		b.WriteString(s.text)
		b.writeItem(s.item)
	}
	b.WriteString(o.tail.String())
}

func (b *promptText) tokens() []uint32 {
	var out []uint32
	for _, s := range b.segs {
		out = s.item.appendTokens(tokenize.Append(out, s.text))
	}
	return tokenize.Append(out, b.tail.String())
}

// tokenStrings returns the text of each token tokens returns.
func (b *promptText) tokenStrings() []string {
	out := []string{}
	for _, s := range b.segs {
		out = append(out, tokenize.Split(s.text)...)
		for range s.item.placeholders() {
			out = append(out, s.item.placeholderString())
		}
	}
	return append(out, tokenize.Split(b.tail.String())...)
}

// OpenAI chat content parts that carry media; each names its item by a
// URL ({"url": ...}, or the bare string) except input_audio, which holds
// base64 data and its format.
type wireMediaParts struct {
	ImageURL   json.RawMessage `json:"image_url"`
	VideoURL   json.RawMessage `json:"video_url"`
	AudioURL   json.RawMessage `json:"audio_url"`
	InputAudio json.RawMessage `json:"input_audio"`
}

// chatMedia reads the item of a media part of type typ; ok is false when
// typ is no media type.
func chatMedia(typ string, p *wireMediaParts) (m mediaItem, ok bool, err error) {
	switch typ {
	case "image_url":
		m, err = partURL(mediaImage, typ, p.ImageURL)
	case "video_url":
		m, err = partURL(mediaVideo, typ, p.VideoURL)
	case "audio_url":
		m, err = partURL(mediaAudio, typ, p.AudioURL)
	case "input_audio":
		m, err = inputAudio(p.InputAudio)
	default:
		return mediaItem{}, false, nil
	}
	return m, true, err
}

// partURL reads field, {"url": "..."} or the URL itself.
func partURL(kind mediaKind, field string, raw json.RawMessage) (mediaItem, error) {
	if isAbsent(raw) {
		return mediaItem{}, fmt.Errorf("%s is required", field)
	}
	var url string
	if bytes.TrimSpace(raw)[0] == '{' {
		var obj struct {
			URL *string `json:"url"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return mediaItem{}, fieldError(field, err)
		}
		if obj.URL == nil || *obj.URL == "" {
			return mediaItem{}, fmt.Errorf("%s.url is required", field)
		}
		url = *obj.URL
	} else if json.Unmarshal(raw, &url) != nil || url == "" {
		return mediaItem{}, fmt.Errorf("%s must be an object with a url, or a URL", field)
	}
	m, err := mediaAt(kind, url)
	if err != nil {
		return mediaItem{}, fmt.Errorf("%s.url: %w", field, err)
	}
	return m, nil
}

// inputAudio reads {"data": base64, "format": "wav"}; both are required,
// as in vLLM.
func inputAudio(raw json.RawMessage) (mediaItem, error) {
	if isAbsent(raw) {
		return mediaItem{}, errors.New("input_audio is required")
	}
	var a struct {
		Data   *string `json:"data"`
		Format *string `json:"format"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return mediaItem{}, fieldError("input_audio", err)
	}
	if a.Data == nil || *a.Data == "" {
		return mediaItem{}, errors.New("input_audio.data is required")
	}
	if a.Format == nil || *a.Format == "" {
		return mediaItem{}, errors.New("input_audio.format is required")
	}
	return newMediaItem(mediaAudio, refData, *a.Data), nil
}

// anthropicImage reads an Anthropic image block's source: {"type":
// "base64", "media_type", "data"} or {"type": "url", "url"}.
func anthropicImage(path string, raw json.RawMessage) (mediaItem, error) {
	if isAbsent(raw) {
		return mediaItem{}, fmt.Errorf("%s: field required", path)
	}
	var src struct {
		Type string `json:"type"`
		Data string `json:"data"`
		URL  string `json:"url"`
	}
	if err := json.Unmarshal(raw, &src); err != nil {
		return mediaItem{}, fieldError(path, err)
	}
	switch src.Type {
	case "base64":
		if src.Data == "" {
			return mediaItem{}, fmt.Errorf("%s.data: field required", path)
		}
		return newMediaItem(mediaImage, refData, src.Data), nil
	case "url":
		if src.URL == "" {
			return mediaItem{}, fmt.Errorf("%s.url: field required", path)
		}
		m, err := mediaAt(mediaImage, src.URL)
		if err != nil {
			return mediaItem{}, fmt.Errorf("%s.url: %w", path, err)
		}
		return m, nil
	case "":
		return mediaItem{}, fmt.Errorf("%s.type: field required", path)
	}
	return mediaItem{}, fmt.Errorf("%s.type: must be \"base64\" or \"url\", got %q", path, src.Type)
}

// mediaSpans finds the multimodal items in a rendered prompt: each run of
// placeholders counting up from position 0 is one item, identified by the
// hash bytes its first eight placeholders carry (an item shorter than
// eight leaves the rest zero). The engine prices encoding them.
func mediaSpans(tokens []uint32) []engine.Media {
	var spans []engine.Media
	for i := 0; i < len(tokens); {
		pos, _, ok := placeholder(tokens[i])
		if !ok || pos != 0 {
			i++
			continue
		}
		start := i
		var id uint64
		for ; i < len(tokens); i++ {
			p, b, ok := placeholder(tokens[i])
			if !ok || p != i-start {
				break
			}
			if p < 8 {
				id |= uint64(b) << (8 * p)
			}
		}
		spans = append(spans, engine.Media{ID: id, Offset: start, Tokens: i - start})
	}
	return spans
}
