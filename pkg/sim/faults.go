package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Faults are the misbehaviours a test can switch on, by flag, through
// Instance.SetFaults, or at runtime with POST /admin/faults. The zero value
// is a healthy server.
type Faults struct {
	// MetricsDelay delays every metrics response.
	MetricsDelay time.Duration
	// MetricsHang makes the metrics endpoint never answer; the request ends
	// only when the client gives up or the server shuts down.
	MetricsHang bool
	// MetricsStatus, if nonzero (400–599), is returned by the metrics
	// endpoint instead of the page.
	MetricsStatus int
	// MetricsGarbage serves text that is not Prometheus exposition format.
	MetricsGarbage bool
	// RefuseConnections stops listening and drops every open connection, so
	// clients see "connection refused"; clearing it listens again on the
	// same address. Note that the admin endpoint is unreachable meanwhile:
	// use RefuseFor or Instance.SetFaults to come back.
	RefuseConnections bool
	// RefuseFor, with RefuseConnections, clears it again after this long.
	RefuseFor time.Duration
	// DieAfterTokens, if nonzero, closes a completion's connection abruptly
	// once it has produced this many tokens (mid-stream for SSE).
	DieAfterTokens int
	// CompletionsStatus, if nonzero (400–599), fails every completion with
	// this status and the API's error body (OpenAI's, or Anthropic's on
	// /v1/messages).
	CompletionsStatus int
}

func (f Faults) validate() error {
	var errs []error
	status := func(name string, v int) {
		if v != 0 && (v < 400 || v > 599) {
			errs = append(errs, fmt.Errorf("%s: must be 0 or 400–599, got %d", name, v))
		}
	}
	status("metricsStatus", f.MetricsStatus)
	status("completionsStatus", f.CompletionsStatus)
	if f.MetricsDelay < 0 {
		errs = append(errs, fmt.Errorf("metricsDelay: must be ≥ 0, got %s", f.MetricsDelay))
	}
	if f.RefuseFor < 0 {
		errs = append(errs, fmt.Errorf("refuseFor: must be ≥ 0, got %s", f.RefuseFor))
	}
	if f.RefuseFor > 0 && !f.RefuseConnections {
		errs = append(errs, errors.New("refuseFor: requires refuseConnections"))
	}
	if f.DieAfterTokens < 0 {
		errs = append(errs, fmt.Errorf("dieAfterTokens: must be ≥ 0, got %d", f.DieAfterTokens))
	}
	return errors.Join(errs...)
}

// faultsJSON is the admin endpoint's wire form: durations as Go duration
// strings ("250ms").
type faultsJSON struct {
	MetricsDelay      string `json:"metricsDelay,omitempty"`
	MetricsHang       bool   `json:"metricsHang,omitempty"`
	MetricsStatus     int    `json:"metricsStatus,omitempty"`
	MetricsGarbage    bool   `json:"metricsGarbage,omitempty"`
	RefuseConnections bool   `json:"refuseConnections,omitempty"`
	RefuseFor         string `json:"refuseFor,omitempty"`
	DieAfterTokens    int    `json:"dieAfterTokens,omitempty"`
	CompletionsStatus int    `json:"completionsStatus,omitempty"`
}

// MarshalJSON writes the admin endpoint's form.
func (f Faults) MarshalJSON() ([]byte, error) {
	w := faultsJSON{
		MetricsHang: f.MetricsHang, MetricsStatus: f.MetricsStatus, MetricsGarbage: f.MetricsGarbage,
		RefuseConnections: f.RefuseConnections, DieAfterTokens: f.DieAfterTokens,
		CompletionsStatus: f.CompletionsStatus,
	}
	if f.MetricsDelay != 0 {
		w.MetricsDelay = f.MetricsDelay.String()
	}
	if f.RefuseFor != 0 {
		w.RefuseFor = f.RefuseFor.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the admin endpoint's form strictly: unknown fields
// and malformed durations are errors.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var w faultsJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("decode faults: %w", err)
	}
	out := Faults{
		MetricsHang: w.MetricsHang, MetricsStatus: w.MetricsStatus, MetricsGarbage: w.MetricsGarbage,
		RefuseConnections: w.RefuseConnections, DieAfterTokens: w.DieAfterTokens,
		CompletionsStatus: w.CompletionsStatus,
	}
	var err error
	if out.MetricsDelay, err = parseOptionalDuration("metricsDelay", w.MetricsDelay); err != nil {
		return err
	}
	if out.RefuseFor, err = parseOptionalDuration("refuseFor", w.RefuseFor); err != nil {
		return err
	}
	*f = out
	return nil
}

func parseOptionalDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return d, nil
}

// handleFaults serves GET and POST /admin/faults. POST replaces the whole
// set and answers with it; the connection-refusing fault takes effect after
// the answer is sent.
func (i *Instance) handleFaults(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, i.Faults())
		return
	}
	var f Faults
	if err := decodeBody(w, r, &f); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := f.validate(); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid faults: %v", err))
		return
	}
	if !f.RefuseConnections {
		if err := i.SetFaults(f); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, f)
		return
	}
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusOK, f)
	_ = http.NewResponseController(w).Flush()
	if err := i.SetFaults(f); err != nil {
		i.log.Error(err, "applying faults")
	}
}
