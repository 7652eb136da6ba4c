package scheduler

import "time"

// Dispatch is one request routed to an endpoint, as a plugin that counts
// dispatches tells the same plugin on other EPP replicas (replica sync):
// active-active replicas each see only the requests the proxy sent them,
// so without it every replica counts a third of the recent traffic and
// they herd onto the endpoint that looks idle to all of them.
type Dispatch struct {
	// Plugin is the sending plugin instance's name; a replica applies the
	// dispatch to its plugin of the same name.
	Plugin   string
	HostPort string
	At       time.Time
}

// DispatchPublisher hears the dispatches of this replica's own decisions.
// PublishDispatch runs on the request path: it must be quick.
type DispatchPublisher interface {
	PublishDispatch(Dispatch)
}

// DispatchSharer is a plugin whose state counts dispatches and can share
// them: it tells the publisher about every dispatch of its own decisions
// (never about applied ones, so replicas do not echo each other), and
// counts the dispatches other replicas made as if it had seen them.
type DispatchSharer interface {
	Plugin
	SetDispatchPublisher(DispatchPublisher)
	// ApplyDispatches must not keep the slice after it returns.
	ApplyDispatches([]Dispatch)
}
