package sim

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// The engine reports its prefix-cache changes through engine.KVEventListener;
// these adapters turn them into vLLM's KV event batches.

// medium is the tier every simulated block lives in.
const medium = "GPU"

// storedEvent copies one BlocksStored call into a BlockStored event (the
// engine reuses its slices).
func storedEvent(parent uint64, hasParent bool, hashes []uint64, tokens []uint32, blockSize int, lora, salt string) *kvevents.BlockStored {
	ev := &kvevents.BlockStored{
		BlockHashes: make([]kvevents.Hash, len(hashes)), Parent: kvevents.Hash(parent), HasParent: hasParent,
		TokenIDs: append([]uint32(nil), tokens...), BlockSize: blockSize, Medium: medium, LoraName: lora,
		ExtraKeys: extraKeys(len(hashes), hasParent, lora, salt, mediaKeys(tokens, blockSize, len(hashes))),
	}
	for i, h := range hashes {
		ev.BlockHashes[i] = kvevents.Hash(h)
	}
	return ev
}

// extraKeys lists, per block of a stored run, what vLLM folds into the
// block's hash besides its tokens, so a subscriber can tell a salted,
// adapter or multimodal block from a base one with the same tokens: the
// adapter's name on every block, then the media items on the blocks
// holding them (media, per block, as mediaKeys gives them), then the cache
// salt on the prompt's first block (only a run without a parent holds
// it). ExtraKeys keeps strings and opaque items apart, so on the wire the
// salt comes before the media. nil when no block has any, as vLLM then
// sends none.
func extraKeys(blocks int, hasParent bool, lora, salt string, media [][]byte) []*kvevents.ExtraKeys {
	saltFirst := salt != "" && !hasParent
	if lora == "" && !saltFirst && media == nil {
		return nil
	}
	// The blocks holding only the adapter share one slice: length and
	// capacity 1, so appending to it copies.
	var adapterOnly []string
	if lora != "" {
		adapterOnly = []string{lora}
	}
	out := make([]*kvevents.ExtraKeys, blocks)
	entries := make([]kvevents.ExtraKeys, blocks) // one allocation for the run
	for i := range out {
		keys := adapterOnly
		if i == 0 && saltFirst {
			keys = append(keys, salt)
		}
		var opaque []byte
		if media != nil {
			opaque = media[i]
		}
		if keys != nil || opaque != nil {
			entries[i].Strings, entries[i].Opaque = keys, opaque
			out[i] = &entries[i]
		}
	}
	return out
}

// mediaKeys returns, per block of a stored run, vLLM's extra key for each
// media item the block overlaps, in order: the msgpack array [identifier,
// offset], the identifier being the item's hash in hex and the offset
// where the item starts relative to the block's first token (negative when
// it started in an earlier block). nil when the run holds no placeholder.
// The placeholders' IDs say it all (see media.go), so the publisher needs
// no word from the request: an item is a stretch of placeholders whose
// positions count up, and its hash bytes are read off them. An item cut by
// the run's edge (a prefill chunk ending in it, or a block another request
// stored first) to fewer than eight placeholders shows only part of its
// hash; the bytes not shown read as zero.
func mediaKeys(tokens []uint32, blockSize, blocks int) [][]byte {
	if blockSize <= 0 || blocks <= 0 || !slices.ContainsFunc(tokens[:min(len(tokens), blocks*blockSize)], tokenize.Reserved) {
		return nil
	}
	out := make([][]byte, blocks)
	for t := 0; t < len(tokens); {
		first, _, ok := placeholder(tokens[t])
		if !ok {
			t++
			continue
		}
		var hash uint64
		end := t
		for ; end < len(tokens); end++ {
			pos, b, ok := placeholder(tokens[end])
			if !ok || pos != first+end-t {
				break
			}
			hash |= uint64(b) << (8 * (pos % 8))
		}
		id, start := fmt.Sprintf("%016x", hash), t-first
		for blk := t / blockSize; blk < blocks && blk*blockSize < end; blk++ {
			out[blk] = appendMediaKey(out[blk], id, start-blk*blockSize)
		}
		t = end
	}
	return out
}

// appendMediaKey appends the msgpack array [id, offset] to b.
func appendMediaKey(b []byte, id string, offset int) []byte {
	buf := bytes.NewBuffer(b)
	enc := msgpack.NewEncoder(buf)
	// Writing to a bytes.Buffer cannot fail.
	_ = enc.EncodeArrayLen(2)
	_ = enc.EncodeString(id)
	_ = enc.EncodeInt(int64(offset))
	return buf.Bytes()
}

func removedEvent(hashes []uint64) *kvevents.BlockRemoved {
	ev := &kvevents.BlockRemoved{BlockHashes: make([]kvevents.Hash, len(hashes)), Medium: medium}
	for i, h := range hashes {
		ev.BlockHashes[i] = kvevents.Hash(h)
	}
	return ev
}

// KVEventBatches hands every change to a function as a batch of one event,
// synchronously: the fleet simulation feeds an index this way, in virtual
// time.
type KVEventBatches func(*kvevents.Batch)

var _ engine.KVEventListener = KVEventBatches(nil)

// BlocksStored implements engine.KVEventListener.
func (f KVEventBatches) BlocksStored(parent uint64, hasParent bool, hashes []uint64, tokens []uint32, blockSize int, lora, salt string) {
	f(&kvevents.Batch{Events: []kvevents.Event{storedEvent(parent, hasParent, hashes, tokens, blockSize, lora, salt)}})
}

// BlocksRemoved implements engine.KVEventListener.
func (f KVEventBatches) BlocksRemoved(hashes []uint64) {
	f(&kvevents.Batch{Events: []kvevents.Event{removedEvent(hashes)}})
}

// AllBlocksCleared implements engine.KVEventListener.
func (f KVEventBatches) AllBlocksCleared() {
	f(&kvevents.Batch{Events: []kvevents.Event{&kvevents.AllBlocksCleared{}}})
}

// maxPendingEvents bounds the events waiting for the socket; beyond it
// events are dropped (and counted), as vLLM's publisher drops past its
// buffer, rather than stall the engine.
const maxPendingEvents = 1 << 16

// KVEventPublisher publishes the engine's changes over ZeroMQ as vLLM
// does (--kv-events-config publisher zmq): the listener calls only queue
// the events, and Run sends whatever queued as one batch, so a slow
// subscriber never stalls the engine.
type KVEventPublisher struct {
	pub     *kvevents.Publisher
	topic   atomic.Pointer[string]
	mu      sync.Mutex
	pending []kvevents.Event
	wake    chan struct{}
	dropped atomic.Uint64
}

var _ engine.KVEventListener = (*KVEventPublisher)(nil)

// NewKVEventPublisher opens the socket: it connects to endpoint (a
// subscriber binding it, as the EPP does by default) or, with bind,
// binds it (for a subscriber that connects to every server).
func NewKVEventPublisher(ctx context.Context, endpoint string, bind bool) (*KVEventPublisher, error) {
	pub, err := kvevents.NewPublisher(ctx, endpoint, !bind)
	if err != nil {
		return nil, err
	}
	return &KVEventPublisher{pub: pub, wake: make(chan struct{}, 1)}, nil
}

// KVEventTopic is llm-d's topic for a server: kv@<host:port>@<model>.
func KVEventTopic(hostPort, model string) string { return "kv@" + hostPort + "@" + model }

// SetTopic sets the topic batches are published under; set it before the
// first event.
func (p *KVEventPublisher) SetTopic(topic string) { p.topic.Store(&topic) }

// Addr is the bound address when binding.
func (p *KVEventPublisher) Addr() string { return p.pub.Addr() }

// Dropped is how many events were dropped because the queue was full.
func (p *KVEventPublisher) Dropped() uint64 { return p.dropped.Load() }

func (p *KVEventPublisher) add(ev kvevents.Event) {
	p.mu.Lock()
	if len(p.pending) >= maxPendingEvents {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	p.pending = append(p.pending, ev)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// BlocksStored implements engine.KVEventListener.
func (p *KVEventPublisher) BlocksStored(parent uint64, hasParent bool, hashes []uint64, tokens []uint32, blockSize int, lora, salt string) {
	p.add(storedEvent(parent, hasParent, hashes, tokens, blockSize, lora, salt))
}

// BlocksRemoved implements engine.KVEventListener.
func (p *KVEventPublisher) BlocksRemoved(hashes []uint64) { p.add(removedEvent(hashes)) }

// AllBlocksCleared implements engine.KVEventListener.
func (p *KVEventPublisher) AllBlocksCleared() { p.add(&kvevents.AllBlocksCleared{}) }

// Run sends queued events until ctx ends, then closes the socket. A send
// that fails is reported to onError and its events are lost, as they are
// from a vLLM whose subscriber is away.
func (p *KVEventPublisher) Run(ctx context.Context, onError func(error)) {
	defer p.pub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		evs := p.pending
		p.pending = nil
		p.mu.Unlock()
		if len(evs) == 0 {
			continue
		}
		topic := "kv@"
		if t := p.topic.Load(); t != nil {
			topic = *t
		}
		b := &kvevents.Batch{TS: float64(time.Now().UnixNano()) / 1e9, Events: evs}
		if err := p.pub.Publish(topic, b); err != nil && onError != nil {
			onError(err)
		}
	}
}
