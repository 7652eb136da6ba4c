package latency

import (
	"fmt"
	"math"
)

// param is a named numeric parameter, for the range checks below.
type param struct {
	name string
	v    float64
}

// nonNegative reports each parameter that is not a finite number >= 0.
func nonNegative(ps ...param) []error {
	var errs []error
	for _, p := range ps {
		if !(p.v >= 0) || math.IsInf(p.v, 0) {
			errs = append(errs, fmt.Errorf("%s: must be a finite number >= 0, got %v", p.name, p.v))
		}
	}
	return errs
}

// fractions reports each parameter outside [0, 1].
func fractions(ps ...param) []error {
	var errs []error
	for _, p := range ps {
		if !(p.v >= 0 && p.v <= 1) {
			errs = append(errs, fmt.Errorf("%s: must be in [0, 1], got %v", p.name, p.v))
		}
	}
	return errs
}
