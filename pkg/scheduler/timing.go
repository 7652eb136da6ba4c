package scheduler

import "time"

// Extension-point names for PluginTimer, upstream's values of the
// extension_point label of inference_extension_plugin_duration_seconds.
const (
	PointProfilePicker   = "ProfilePicker"
	PointProcessResults  = "ProcessProfilesResults"
	PointFilter          = "Filter"
	PointScorer          = "Scorer"
	PointPicker          = "Picker"
	PointPrepareData     = "PrepareData"
	PointAdmitRequest    = "AdmitRequest"
	PointPreRequest      = "PreRequest"
	PointResponseHeaders = "ResponseReceived"
	PointResponseChunk   = "ResponseStreaming"
	PointResponseDone    = "ResponseComplete"
	// Ours: extension points upstream does not have.
	PointScreen     = "Screen"
	PointRespond    = "Respond"
	PointFairnessID = "FairnessID"
	PointAttribute  = "Attribute"
)

// PluginTimer receives how long each plugin call took. It is called on the
// request path, so it must be cheap and safe for concurrent use.
type PluginTimer interface {
	ObservePlugin(point string, plugin TypedName, d time.Duration)
}

// timing measures plugin calls for a PluginTimer; its zero value (no timer)
// measures nothing and costs no clock reads.
type timing struct{ timer PluginTimer }

// start returns the time a call starts, or the zero time without a timer.
func (t timing) start() time.Time {
	if t.timer == nil {
		return time.Time{}
	}
	return time.Now()
}

// done reports a call of p at point that began at start.
func (t timing) done(point string, p Plugin, start time.Time) {
	if t.timer != nil {
		t.timer.ObservePlugin(point, p.TypedName(), time.Since(start))
	}
}
