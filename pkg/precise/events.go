package precise

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
)

// bindAttempts × bindRetry is how long a new instance waits for the port a
// reloaded config's previous instance still holds, before it retries only
// every bindRetrySlow.
const (
	bindAttempts  = 50
	bindRetry     = 100 * time.Millisecond
	bindRetrySlow = 5 * time.Second
	// reconcileEvery is how often per-endpoint subscriptions follow the
	// pool.
	reconcileEvery = 2 * time.Second
)

func (p *Producer) subscribe(ctx context.Context) error {
	if p.params.KVEventsConfig.DiscoverPods {
		p.subscribePods(ctx)
		return nil
	}
	return p.subscribeCentral(ctx)
}

// subscribeCentral binds zmqEndpoint; servers publish to it, each under a
// topic naming its address.
func (p *Producer) subscribeCentral(ctx context.Context) error {
	ev := p.params.KVEventsConfig
	var sub *kvevents.Subscriber
	for attempt := 1; ; attempt++ {
		var err error
		sub, err = kvevents.NewSubscriber(ctx, ev.ZMQEndpoint, ev.TopicFilter, true)
		if err == nil {
			break
		}
		// A reloaded config's previous instance may still hold the port
		// for a moment; past that, keep trying (the subscriptions gauge
		// stays 0, which an alert watches) rather than give up for good.
		wait := bindRetry
		if attempt >= bindAttempts {
			wait = bindRetrySlow
			p.warnf("cannot bind kvEventsConfig.zmqEndpoint; no KV events are received until it can", "zmqEndpoint", ev.ZMQEndpoint, "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	defer sub.Close()
	addr := sub.Addr()
	p.eventsAddr.Store(&addr)
	p.log.Info("receiving KV events", "zmqEndpoint", addr, "topicFilter", ev.TopicFilter)
	p.subscriptions(1)
	defer p.subscriptions(0)
	res := &topicResolver{pool: p.endpoints}
	err := sub.Run(ctx, func(m kvevents.Message) {
		hp, ok := res.resolve(m.Topic)
		if !ok {
			p.metrics.add("unknown_source", 1)
			p.warnf("a KV event topic names no endpoint of the pool; publish as kv@<host:port>@<model>", "topic", m.Topic)
			return
		}
		p.Ingest(hp, m.Batch)
	}, func(err error) {
		var gap *kvevents.GapError
		if errors.As(err, &gap) {
			if hp, ok := res.resolve(gap.Topic); ok {
				p.Lost(hp)
			}
			return
		}
		p.streamError(err, "")
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// subscribePods keeps one subscription per endpoint of the pool, connected
// to its events address (eventAddrs), until ctx ends; an endpoint whose
// address changes (a rank added on its IP) is subscribed again.
func (p *Producer) subscribePods(ctx context.Context) {
	base := p.params.KVEventsConfig.PodDiscoveryConfig.SocketPort
	type running struct {
		cancel context.CancelFunc
		addr   string
	}
	subs := map[string]running{}
	var open atomic.Int64
	var wg sync.WaitGroup
	defer func() {
		for _, r := range subs {
			r.cancel()
		}
		wg.Wait()
		p.subscriptions(0)
	}()
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		want := map[string]string{} // endpoint → its events address
		if p.endpoints != nil {
			want = eventAddrs(p.endpoints(), base)
		}
		for hp, r := range subs {
			if want[hp] != r.addr {
				r.cancel()
				delete(subs, hp)
			}
		}
		for hp, addr := range want {
			if _, ok := subs[hp]; ok {
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			subs[hp] = running{cancel: cancel, addr: addr}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.subscriptions(open.Add(1))
				defer func() { p.subscriptions(open.Add(-1)) }()
				p.followPod(sctx, hp, addr)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// eventAddrs gives each endpoint the address its server publishes on: its
// IP at base plus its rank, the rank being its port's place among the
// ports of the pool's endpoints on that IP (vLLM's data-parallel ranks
// serve on consecutive ports and publish on socketPort + rank; a pod with
// one port publishes on socketPort).
func eventAddrs(eps []*endpoint.Endpoint, base int) map[string]string {
	byIP := map[string][]int{}
	for _, e := range eps {
		byIP[e.Address] = append(byIP[e.Address], e.Port)
	}
	out := make(map[string]string, len(eps))
	for _, e := range eps {
		ports := byIP[e.Address]
		slices.Sort(ports)
		rank := slices.Index(ports, e.Port)
		out[e.HostPort] = "tcp://" + net.JoinHostPort(e.Address, strconv.Itoa(base+rank))
	}
	return out
}

// followPod applies the events of the server at hostPort, published at
// addr, whatever their topic says, until ctx ends.
func (p *Producer) followPod(ctx context.Context, hostPort, addr string) {
	ev := p.params.KVEventsConfig
	sub, err := kvevents.NewSubscriber(ctx, addr, ev.TopicFilter, false)
	if err != nil {
		p.warnf("cannot subscribe to a model server's KV events", "endpoint", hostPort, "address", addr, "error", err.Error())
		return
	}
	defer sub.Close()
	_ = sub.Run(ctx, func(m kvevents.Message) { p.Ingest(hostPort, m.Batch) }, func(err error) {
		var gap *kvevents.GapError
		if errors.As(err, &gap) {
			p.Lost(hostPort)
			return
		}
		p.streamError(err, hostPort)
	})
}

// streamError counts and logs what a subscription reported: a lost
// connection (the stream's sequence numbers tell, once it is back, whether
// events were missed) or a message that could not be decoded.
func (p *Producer) streamError(err error, hostPort string) {
	if errors.Is(err, kvevents.ErrDisconnected) {
		p.metrics.add("disconnected", 1)
		p.log.V(1).Info("a KV event connection dropped; reconnecting", "endpoint", hostPort, "error", err.Error())
		return
	}
	p.metrics.add("undecodable", 1)
	p.warnf("an undecodable KV event message was skipped", "endpoint", hostPort, "error", err.Error())
}

// warnf logs at most every warnEvery per producer.
func (p *Producer) warnf(msg string, kv ...any) {
	if !p.warned.Allow(time.Now(), warnEvery) {
		return
	}
	p.log.Info(msg+" (logged at most every 30s)", kv...)
}

// topicResolver maps a topic's address to an endpoint of the pool: the
// endpoint whose host:port it is, or the only endpoint with that IP.
type topicResolver struct {
	pool  func() []*endpoint.Endpoint
	mu    sync.Mutex
	cache map[string]string
	since time.Time // the cache is dropped every 10s, so pool changes show
}

func (r *topicResolver) resolve(topic string) (string, bool) {
	addr, _, ok := kvevents.ParseTopic(topic)
	if !ok || r.pool == nil {
		return "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); r.cache == nil || now.Sub(r.since) > 10*time.Second {
		r.cache, r.since = map[string]string{}, now
	}
	if hp, ok := r.cache[addr]; ok {
		return hp, true
	}
	hp, found := "", 0
	for _, e := range r.pool() {
		if e.HostPort == addr {
			hp, found = e.HostPort, 1
			break
		}
		if e.Address == addr {
			hp = e.HostPort
			found++
		}
	}
	if found != 1 {
		return "", false
	}
	r.cache[addr] = hp
	return hp, true
}
