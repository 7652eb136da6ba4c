package fleet

import (
	"errors"
	"fmt"
	"time"
)

// Clients that retry evicted requests (RunSpec.Retry). llm-d leaves
// retries to clients: its async processor re-sends a shed or evicted
// request with exponential backoff and equal jitter. Here a client that
// gets an eviction's 429 sends the same request again (same prompt, so a
// prefix cache may still hold it; same class, priority and fairness ID)
// after a backoff, at most Retry.Max times. Each attempt is a flight of
// its own, with its own request ID, routing, lease and flow-control wait
// (the queue's TTL and order run from its send); all attempts share the
// client request's arrival, so its TTFT, end-to-end latency and client
// timeout run from the first send. Only the last attempt says how the
// request ended. A retry due at or after the client's timeout is not
// sent: the request ends evicted.

// Retry is how clients answer an eviction; the zero value does not retry.
type Retry struct {
	// Max bounds the retries of one request (0: none).
	Max int
	// Backoff is the nominal wait before the first retry, doubled for each
	// next one; each wait is drawn from [d/2, d) with the run's seed.
	// 0 means DefaultRetryBackoff.
	Backoff time.Duration
}

// DefaultRetryBackoff is Retry's first nominal wait.
const DefaultRetryBackoff = time.Second

// maxRetries bounds Retry.Max (a flight counts its attempt in a byte).
const maxRetries = 10

// RetryingClients are the priority study's retrying clients: up to 3
// retries, after 0.5–1, 1–2 and 2–4 s.
func RetryingClients() Retry { return Retry{Max: 3, Backoff: DefaultRetryBackoff} }

func (r Retry) withDefaults() Retry {
	if r.Max > 0 && r.Backoff == 0 {
		r.Backoff = DefaultRetryBackoff
	}
	return r
}

// Validate reports a retry count outside [0, 10] or a backoff outside
// [0, 1h].
func (r Retry) Validate() error {
	var errs []error
	if r.Max < 0 || r.Max > maxRetries {
		errs = append(errs, fmt.Errorf("retry: at most %d retries, got %d", maxRetries, r.Max))
	}
	if r.Backoff < 0 || r.Backoff > time.Hour {
		errs = append(errs, fmt.Errorf("retry: backoff must be in [0, 1h], got %s", r.Backoff))
	}
	return errors.Join(errs...)
}

// retry has the client send f's request again after its eviction,
// unless its retries are spent or the retry would come after the client's
// timeout; p is the prompt the evicted attempt released.
func (s *sim) retry(f *flight, p *prompt) {
	if int(f.attempt) >= s.spec.Retry.Max {
		return
	}
	d := s.spec.Retry.Backoff << f.attempt
	at := s.now() + d/2 + time.Duration(s.retryRng.Int64N(int64(d-d/2)))
	if s.spec.Timeout > 0 && at >= f.arrival+s.spec.Timeout {
		return
	}
	f.p, f.retried = p, true
	s.open++ // the client request stays open through its backoff
	s.events.push(event{at: at, kind: evRetry, id: f.id})
}

// resend is the client's next attempt of evicted flight id: the same
// request, arrived when the client first sent it, counted (measured) as
// it was.
func (s *sim) resend(id uint64) {
	prev := &s.flights[id]
	next := flight{p: prev.p, arrival: prev.arrival, measured: prev.measured, class: prev.class, attempt: prev.attempt + 1}
	prev.p = nil
	s.send(next)
}

// countAttempt adds measured flight f to a result's retries and evicted
// attempts, and reports whether f is its request's last attempt, whose
// status is the request's outcome.
func countAttempt(f *flight, retries, evicted *int) bool {
	if f.attempt > 0 {
		*retries++
	}
	if f.status == flightEvicted {
		*evicted++
	}
	return !f.retried
}
