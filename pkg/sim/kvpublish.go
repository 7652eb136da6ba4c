package sim

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/sim/engine"
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
		ExtraKeys: extraKeys(len(hashes), hasParent, lora, salt),
	}
	for i, h := range hashes {
		ev.BlockHashes[i] = kvevents.Hash(h)
	}
	return ev
}

// extraKeys lists, per block of a stored run, what vLLM folds into the
// block's hash besides its tokens, so a subscriber can tell a salted or
// adapter block from a base one with the same tokens: the adapter's name
// on every block, then the cache salt on the prompt's first block (only a
// run without a parent holds it). nil when no block has any, as vLLM
// then sends none.
func extraKeys(blocks int, hasParent bool, lora, salt string) []*kvevents.ExtraKeys {
	saltFirst := salt != "" && !hasParent
	if lora == "" && !saltFirst {
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
		if keys != nil {
			entries[i].Strings = keys
			out[i] = &entries[i]
		}
	}
	return out
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
