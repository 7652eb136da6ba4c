package scheduler

import (
	"errors"
	"fmt"
)

// ErrNoCandidates means no endpoint can serve the request: the pool (or the
// subset the proxy allowed) is empty, or filters removed every endpoint.
var ErrNoCandidates = errors.New("no candidate endpoints")

// ErrInvalidRequest means the request asks for something the configuration
// cannot do (for example, a header naming a scheduling profile that does
// not exist); it is answered with 400, since sending it again will not help.
var ErrInvalidRequest = errors.New("invalid request")

// ErrRejected means the request was refused by admission control because of
// load (answered with 429 so clients back off).
var ErrRejected = errors.New("request rejected")

// FilteredError reports the filter that removed the last endpoint.
type FilteredError struct {
	Profile string
	Filter  TypedName
	Before  int
}

func (e *FilteredError) Error() string {
	return fmt.Sprintf("profile %q: filter %q removed all %d remaining endpoints", e.Profile, e.Filter.String(), e.Before)
}

// Unwrap makes errors.Is(err, ErrNoCandidates) true.
func (e *FilteredError) Unwrap() error { return ErrNoCandidates }

// ShedError reports a sheddable request refused because the candidate
// endpoints were saturated (legacy admission, as upstream does without flow
// control).
type ShedError struct {
	Priority   int
	Saturation float64
	Detector   TypedName
}

func (e *ShedError) Error() string {
	return fmt.Sprintf("sheddable request (priority %d) shed: %s rates the pool's saturation %.2f (>= 1)",
		e.Priority, e.Detector.String(), e.Saturation)
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *ShedError) Unwrap() error { return ErrRejected }
