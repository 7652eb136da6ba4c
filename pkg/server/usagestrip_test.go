package server

import (
	"strings"
	"testing"
)

// vllmStream is a streamed chat completion as vLLM sends it with
// include_usage: null usage on each chunk, then the usage-only chunk.
const vllmStream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n" +
	"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
	"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\": [ ],\"usage\": {\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n" +
	"data: [DONE]\n\n"

// TestUsageStripperAnySplit: whatever the chunking, the client gets every
// event but the usage-only one, byte for byte; CRLF streams too.
func TestUsageStripperAnySplit(t *testing.T) {
	t.Parallel()
	for _, eol := range []string{"\n", "\r\n"} {
		stream := strings.ReplaceAll(vllmStream, "\n", eol)
		usage := strings.Split(stream, eol+eol)[2] + eol + eol
		want := strings.Replace(stream, usage, "", 1)
		for cut1 := 0; cut1 <= len(stream); cut1 += 3 {
			for cut2 := cut1; cut2 <= len(stream); cut2 += 7 {
				u := &usageStripper{}
				var got []byte
				for i, part := range []string{stream[:cut1], stream[cut1:cut2], stream[cut2:]} {
					out, ok := u.rewrite([]byte(part), i == 2)
					if ok {
						got = append(got, out...)
					}
				}
				if string(got) != want {
					t.Fatalf("eol %q, cuts %d/%d: got %q, want %q", eol, cut1, cut2, got, want)
				}
			}
		}
	}
}

// TestUsageStripperKeeps: events that carry choices, or are not data, pass;
// a stream ended by trailers flushes what was held; a nil stripper and an
// oversized event pass everything.
func TestUsageStripperKeeps(t *testing.T) {
	t.Parallel()
	continuous := "data: {\"choices\":[{\"index\":0,\"text\":\"x\"}],\"usage\":{\"completion_tokens\":1}}\n\n"
	comment := ": keep-alive \"choices\":[] \"usage\":{}\n\n"
	u := &usageStripper{}
	if out, _ := u.rewrite([]byte(continuous+comment), false); string(out) != continuous+comment {
		t.Errorf("kept events: got %q", out)
	}
	if out, ok := u.rewrite([]byte("data: {\"choices\":[]"), false); ok || len(out) != 0 {
		t.Errorf("an unfinished event was forwarded: %q", out)
	}
	if rest, _ := u.rewrite(nil, true); string(rest) != "data: {\"choices\":[]" {
		t.Errorf("final flush: %q", rest)
	}
	var none *usageStripper
	if out, ok := none.rewrite([]byte(vllmStream), false); !ok || string(out) != vllmStream {
		t.Errorf("nil stripper changed the stream")
	}
	big := &usageStripper{}
	huge := "data: " + strings.Repeat("x", maxHeldEvent+1)
	if out, _ := big.rewrite([]byte(huge), false); string(out) != huge || !big.giveUp {
		t.Errorf("an event without end past the limit was held (%d bytes out)", len(out))
	}
	if out, _ := big.rewrite([]byte(vllmStream), false); string(out) != vllmStream {
		t.Errorf("after giving up the stream must pass untouched")
	}
}

// FuzzUsageStripper: however a stream is cut into chunks, the stripper
// forwards what it forwards for the stream in one piece, and what it drops
// are whole usage-only events.
func FuzzUsageStripper(f *testing.F) {
	f.Add(vllmStream, uint16(10), uint16(40))
	f.Add("data: {\"choices\":[],\"usage\":{}}\r\rdata: x\n\n", uint16(3), uint16(5))
	f.Fuzz(func(t *testing.T, stream string, a, b uint16) {
		cut1 := int(a) % (len(stream) + 1)
		cut2 := cut1 + int(b)%(len(stream)-cut1+1)
		whole, _ := (&usageStripper{}).rewrite([]byte(stream), true)
		u := &usageStripper{}
		var got []byte
		for i, part := range []string{stream[:cut1], stream[cut1:cut2], stream[cut2:]} {
			if out, ok := u.rewrite([]byte(part), i == 2); ok {
				got = append(got, out...)
			}
		}
		if string(got) != string(whole) {
			t.Fatalf("cuts %d/%d: %q, in one piece %q", cut1, cut2, got, whole)
		}
		if len(whole) > len(stream) {
			t.Fatalf("the stripper added bytes: %q from %q", whole, stream)
		}
	})
}
