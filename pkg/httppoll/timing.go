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

// Durations reads the interval and timeout parameters, valid as
// DurationProblems checks: an empty interval is defInterval, an empty
// timeout defTimeout or the interval, the shorter. timeoutSet reports that
// the timeout was given, so that a later interval (SetInterval) leaves it.
func Durations(interval, timeout string, defInterval, defTimeout time.Duration) (iv, to time.Duration, timeoutSet bool) {
	iv = defInterval
	if interval != "" {
		iv, _ = time.ParseDuration(interval)
	}
	if timeout == "" {
		return iv, min(defTimeout, iv), false
	}
	to, _ = time.ParseDuration(timeout)
	return iv, to, true
}
