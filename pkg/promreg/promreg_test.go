package promreg

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSharedReturnsTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "X."}
	first, err := Shared(reg, prometheus.NewCounterVec(opts, []string{"a"}))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Shared(reg, prometheus.NewCounterVec(opts, []string{"a"}))
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("a second registration got a new collector: the first one's series would stop")
	}
	// Same name, other labels: the registry refuses, and so does Shared.
	if _, err := Shared(reg, prometheus.NewCounterVec(opts, []string{"b"})); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("conflicting registration: err = %v", err)
	}
	// Same description, other collector kind: not the caller's type.
	if _, err := Shared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts(opts), []string{"a"})); err == nil {
		t.Error("a gauge was handed the counter's registration")
	}
}
