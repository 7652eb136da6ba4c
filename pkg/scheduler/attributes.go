package scheduler

import "context"

// Attributes asks every AttributeSource for its value for a request with
// headers and returns the non-empty ones by key, or nil when there are none
// (no source configured costs nothing). When two sources publish one key,
// the first in configuration order with a value wins.
func (s *Scheduler) Attributes(ctx context.Context, headers map[string]string) map[string]string {
	var out map[string]string
	for _, a := range s.attributes {
		key := a.AttributeKey()
		if _, done := out[key]; done {
			continue
		}
		t := s.timing.start()
		v := a.Attribute(ctx, headers)
		s.timing.done(PointAttribute, a, t)
		if v == "" {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(s.attributes))
		}
		out[key] = v
	}
	return out
}
