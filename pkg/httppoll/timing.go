package httppoll

import (
	"fmt"
	"time"
)

// DurationProblems lists the interval and timeout parameters that are set
// but not positive durations, as the config names them; example is a
// valid one for the message, such as "5s".
func DurationProblems(interval, timeout, example string) []error {
	var errs []error
	for _, d := range []struct{ name, v string }{{"interval", interval}, {"timeout", timeout}} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be a positive duration such as %s, got %q", d.name, example, d.v))
		}
	}
	return errs
}

// Timing is a source's polling interval and per-poll timeout, as its
// parameters give them and its dataLayer.sources entry's interval (llm-d's)
// changes them. Sources embed it.
type Timing struct {
	Interval, Timeout time.Duration
	timeoutSet        bool // the timeout parameter was given: an interval leaves it
	defTimeout        time.Duration
}

// NewTiming reads the interval and timeout parameters, valid as
// DurationProblems checks: an empty interval is defInterval, an empty
// timeout defTimeout or the interval, the shorter.
func NewTiming(interval, timeout string, defInterval, defTimeout time.Duration) Timing {
	t := Timing{Interval: defInterval, defTimeout: defTimeout}
	if interval != "" {
		t.Interval, _ = time.ParseDuration(interval)
	}
	if timeout == "" {
		t.Timeout = min(defTimeout, t.Interval)
		return t
	}
	t.Timeout, _ = time.ParseDuration(timeout)
	t.timeoutSet = true
	return t
}

// SetInterval implements scheduler.IntervalSource: the polling interval of
// the source's dataLayer.sources entry, as the interval parameter; a
// timeout not given follows it.
func (t *Timing) SetInterval(d time.Duration) {
	t.Interval = d
	if !t.timeoutSet {
		t.Timeout = min(t.defTimeout, d)
	}
}
