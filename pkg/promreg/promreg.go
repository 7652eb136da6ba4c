// Package promreg registers plugin collectors that outlive their plugin:
// a config reload builds new instances whose metrics must continue the old
// series, and two instances of one type share a family.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Shared registers c, or returns the collector of the same kind already
// registered under its description (another instance's, or the previous
// config's), so the series continue. It fails when the name is taken by a
// collector of another kind or other labels.
func Shared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// Outcomes registers (or finds, as Shared) a counter of a plugin's
// outcomes labelled plugin and outcome; nil, and no error, when reg is nil
// (the plugin then counts nothing).
func Outcomes(reg prometheus.Registerer, name, help string) (*prometheus.CounterVec, error) {
	if reg == nil {
		return nil, nil
	}
	return Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"plugin", "outcome"}))
}
