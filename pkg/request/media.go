package request

import (
	"bytes"
	"encoding/json"

	"github.com/cespare/xxhash/v2"
)

// Multimodal items: the images, audio and video a request references,
// found without unmarshalling the body (megabytes of inline base64 are
// common), for plugins that route on them (mm-embeddings-cache-producer).

// mediaKind is what an item is.
type mediaKind byte

// The kinds of items.
const (
	mediaImage mediaKind = 'i'
	mediaAudio mediaKind = 'a'
	mediaVideo mediaKind = 'v'
)

// mediaRef is how a request references an item: an image and an inline
// payload that happens to spell its URL are different items.
type mediaRef byte

// The ways of referencing an item.
const (
	mediaURL  mediaRef = 'u'
	mediaData mediaRef = 'd' // inline base64: a data: URL's payload, or a bare base64 field
	mediaFile mediaRef = 'f' // an uploaded file's ID
)

// mediaMarkers are strings every part type read here puts in the JSON; a
// prompt with none of them (text, the common case) is not walked at all.
var mediaMarkers = [][]byte{[]byte(`_url"`), []byte(`"image"`), []byte(`"input_audio"`), []byte(`"input_image"`)}

// maxMediaDepth bounds the walk's nesting; nothing deeper is looked at (a
// chat part is at depth 3, an Anthropic tool result's image at 5).
const maxMediaDepth = 32

// AppendMediaHashes appends to dst a 64-bit hash of every multimodal item
// the body's prompt references, in order, repeats included. The hash
// covers the item's kind, how it is referenced and its URL, inline payload
// or file ID, so identical references give identical hashes; its top two
// bits are the kind (MediaModality). Items:
//
//   - OpenAI chat content parts image_url, video_url and audio_url (by
//     their url; a data: URL by its base64 payload) and input_audio (by
//     its data);
//   - Anthropic Messages image blocks (source base64 by its data, url by
//     its url, file by its file_id), tool results' included;
//   - OpenAI Responses input_image parts (by image_url, else file_id).
//
// Parts of other types, parts lacking what identifies them, and JSON the
// walk cannot follow are skipped. Only chat completions, Responses,
// Anthropic Messages and conversation items are read; a prompt without a
// media marker returns dst at once. It allocates only to grow dst (and
// to decode a string with escapes, rare in URLs and base64).
func (b *Body) AppendMediaHashes(dst []uint64) []uint64 {
	if b == nil {
		return dst
	}
	switch b.API {
	case ChatCompletions, Responses, Messages, Conversations:
	default:
		return dst
	}
	if !mayHoldMedia(b.Prompt) {
		return dst
	}
	x := mediaWalker{b: b.Prompt, hashes: dst}
	// An Anthropic request with a system prompt gives two values, one
	// after the other.
	for i := skipSpace(x.b, 0); i < len(x.b); i = skipSpace(x.b, i) {
		end := x.value(i, 0)
		if end < 0 {
			break
		}
		i = end
	}
	return x.hashes
}

// mayHoldMedia reports whether prompt contains a media marker.
func mayHoldMedia(prompt []byte) bool {
	for _, m := range mediaMarkers {
		if bytes.Contains(prompt, m) {
			return true
		}
	}
	return false
}

// mediaWalker walks one prompt (validated JSON), reporting items. Its
// indexes are bounds checked all the same: any bytes give at worst fewer
// items, never a panic.
type mediaWalker struct {
	b      []byte
	hashes []uint64
}

func (x *mediaWalker) item(kind mediaKind, ref mediaRef, id []byte) {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write([]byte{byte(kind), byte(ref)})
	_, _ = d.Write(id)
	x.hashes = append(x.hashes, d.Sum64()>>2|kindBits(kind)<<62)
}

// kindBits is the code of kind kept in an item hash's top two bits.
func kindBits(kind mediaKind) uint64 {
	switch kind {
	case mediaImage:
		return 1
	case mediaAudio:
		return 2
	case mediaVideo:
		return 3
	}
	return 0
}

// MediaModalities are the values MediaModality returns, by a hash's top two
// bits.
var MediaModalities = [4]string{"", "image", "audio", "video"}

// MediaModality is the kind of the item a hash from AppendMediaHashes
// stands for: "image", "audio" or "video" (llm-d's modality label values).
func MediaModality(hash uint64) string { return MediaModalities[hash>>62] }

// stringEnd returns the index just past the string opening at b[i], or -1
// when it is not closed. Unlike skipString it finds quotes with
// bytes.IndexByte and counts the backslashes before each: media strings are
// megabytes of base64 without a backslash, where memchr is several times
// faster than scanning for both bytes at once.
func (x *mediaWalker) stringEnd(i int) int {
	b := x.b
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		backslashes := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
	return -1
}

// skip returns the index just past the value at b[i], or -1.
func (x *mediaWalker) skip(i int) int {
	if i >= len(x.b) {
		return -1
	}
	switch x.b[i] {
	case ',', ':', '}', ']':
		return -1
	case '"':
		return x.stringEnd(i)
	}
	end := skipValue(x.b, i)
	if end <= i || end > len(x.b) {
		return -1
	}
	return end
}

// member returns the span of the value of key name in the object at obj,
// or an absent span.
func (x *mediaWalker) member(obj span, name string) span {
	b := x.b
	if !obj.ok() || b[obj.start] != '{' {
		return span{}
	}
	i := skipSpace(b, obj.start+1)
	for i < obj.end && b[i] == '"' {
		ks, kEnd := i, x.stringEnd(i)
		if kEnd < 0 || kEnd > obj.end {
			return span{}
		}
		i = skipSpace(b, kEnd)
		if i >= obj.end || b[i] != ':' {
			return span{}
		}
		vs := skipSpace(b, i+1)
		ve := x.skip(vs)
		if ve < 0 || ve > obj.end {
			return span{}
		}
		if string(b[ks+1:kEnd-1]) == name {
			return span{vs, ve}
		}
		i = skipSpace(b, ve)
		if i < obj.end && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return span{}
}

// value walks the value at b[i] and returns the index just past it, or -1
// when the JSON cannot be followed.
func (x *mediaWalker) value(i, depth int) int {
	if i >= len(x.b) {
		return -1
	}
	if depth > maxMediaDepth {
		return x.skip(i)
	}
	switch x.b[i] {
	case '{':
		return x.object(i, depth)
	case '[':
		return x.array(i, depth)
	}
	return x.skip(i)
}

func (x *mediaWalker) array(i, depth int) int {
	b := x.b
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		end := x.value(i, depth+1)
		if end < 0 {
			return -1
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

// object walks an object's members (items nest: a message holds parts)
// and then takes the object itself as a part if its type says it is one.
func (x *mediaWalker) object(i, depth int) int {
	b := x.b
	var p part
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		kEnd := x.stringEnd(i)
		if kEnd < 0 {
			return -1
		}
		key := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		vs := skipSpace(b, i+1)
		ve := x.value(vs, depth+1)
		if ve < 0 {
			return -1
		}
		p.note(key, span{vs, ve})
		i = skipSpace(b, ve)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			x.take(&p)
			return i + 1
		default:
			return -1
		}
	}
}

// part holds the members of an object that identify an item, should the
// object be a content part.
type part struct {
	typ, imageURL, videoURL, audioURL, inputAudio, source, fileID span
}

func (p *part) note(key []byte, v span) {
	switch string(key) {
	case "type":
		p.typ = v
	case "image_url":
		p.imageURL = v
	case "video_url":
		p.videoURL = v
	case "audio_url":
		p.audioURL = v
	case "input_audio":
		p.inputAudio = v
	case "source":
		p.source = v
	case "file_id":
		p.fileID = v
	}
}

// take records the item p is, if it is one.
func (x *mediaWalker) take(p *part) {
	if !p.typ.ok() {
		return
	}
	switch string(x.b[p.typ.start:p.typ.end]) {
	case `"image_url"`:
		x.fromURL(mediaImage, p.imageURL)
	case `"video_url"`:
		x.fromURL(mediaVideo, p.videoURL)
	case `"audio_url"`:
		x.fromURL(mediaAudio, p.audioURL)
	case `"input_audio"`:
		x.add(mediaAudio, mediaData, x.member(p.inputAudio, "data"))
	case `"input_image"`:
		if p.imageURL.ok() {
			x.fromURL(mediaImage, p.imageURL)
		} else {
			x.add(mediaImage, mediaFile, p.fileID)
		}
	case `"image"`:
		x.fromSource(mediaImage, p.source)
	}
}

// fromURL records the item at a URL given as a string or as {"url": ...}.
func (x *mediaWalker) fromURL(kind mediaKind, v span) {
	if v.ok() && x.b[v.start] == '{' {
		v = x.member(v, "url")
	}
	s, ok := x.str(v)
	if !ok {
		return
	}
	if payload, isData := dataPayload(s); isData {
		if len(payload) > 0 { // a data: URL without data is no item
			x.item(kind, mediaData, payload)
		}
		return
	}
	x.item(kind, mediaURL, s)
}

// fromSource records the item of an Anthropic source object.
func (x *mediaWalker) fromSource(kind mediaKind, src span) {
	t := x.member(src, "type")
	switch string(x.b[t.start:t.end]) {
	case `"base64"`:
		x.add(kind, mediaData, x.member(src, "data"))
	case `"url"`:
		x.fromURL(kind, x.member(src, "url"))
	case `"file"`:
		x.add(kind, mediaFile, x.member(src, "file_id"))
	}
}

func (x *mediaWalker) add(kind mediaKind, ref mediaRef, v span) {
	if s, ok := x.str(v); ok {
		x.item(kind, ref, s)
	}
}

// str returns the text of the non-empty JSON string at v. Only a string
// with escapes (rare in URLs and base64) is decoded, into a new buffer.
func (x *mediaWalker) str(v span) ([]byte, bool) {
	if v.end-v.start < 3 || x.b[v.start] != '"' {
		return nil, false
	}
	raw := x.b[v.start+1 : v.end-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, true
	}
	var s string
	if json.Unmarshal(x.b[v.start:v.end], &s) != nil || s == "" {
		return nil, false
	}
	return []byte(s), true
}

// dataPayload reports whether s is a data: URL and returns what follows
// its comma (nil when nothing does).
func dataPayload(s []byte) (payload []byte, isData bool) {
	if len(s) < 5 || !bytes.EqualFold(s[:5], []byte("data:")) {
		return nil, false
	}
	i := bytes.IndexByte(s, ',')
	if i < 0 {
		return nil, true
	}
	return s[i+1:], true
}
