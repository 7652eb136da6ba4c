package epp

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// moduleVersion is the main module's version as Go stamped it ("(devel)"
// for a build from a checkout).
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}

// buildInfo is upstream's inference_extension_info gauge (always 1), whose
// labels say which build is running: the VCS commit Go stamped into the
// binary ("-dirty" when the tree had changes) and the main module's version.
func buildInfo() prometheus.Collector {
	commit, ref := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		ref = bi.Main.Version
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && commit != "unknown" {
			commit += "-dirty"
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "inference_extension_info", Help: "The running build (always 1).",
		ConstLabels: prometheus.Labels{"commit": commit, "build_ref": ref}})
	g.Set(1)
	return g
}
