// Package fetchfail names why fetching from a model server failed, from a
// fixed vocabulary, so the reason labels of the data sources' error
// counters stay bounded and mean the same in every source.
package fetchfail

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// The reasons a fetch failed.
const (
	Timeout  = "timeout"
	Refused  = "connection_refused"
	Connect  = "connection"
	Status   = "http_status"
	Read     = "read"
	TooLarge = "too_large"
	Parse    = "parse"
)

// Reasons lists every reason, for pre-creating counters.
var Reasons = []string{Timeout, Refused, Connect, Status, Read, TooLarge, Parse}

// Classify names err's reason when it is a timeout or a refused
// connection, and fallback (the step that failed) otherwise.
func Classify(err error, fallback string) string {
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return Timeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	}
	return fallback
}
