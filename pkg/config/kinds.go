package config

import (
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// pluginKind is the set of scheduler extension points a built plugin implements.
// Defaulting and validation decide by kind, never by plugin type, so an
// out-of-tree scorer is treated exactly like a built-in one.
type pluginKind uint16

const (
	kindHandler pluginKind = 1 << iota
	kindFilter
	kindScorer
	kindPicker
	kindProducer
	kindAdmitter
	kindHook
	kindSaturation
	kindFairness
	kindOrdering
	kindUsageLimit
	kindDiscovery
	kindScreener
	kindResponder
	kindDataSource
	kindFairnessSource
)

// kindProfile is what a profile may hold.
const kindProfile = kindFilter | kindScorer | kindPicker

var kindNames = []struct {
	k    pluginKind
	name string
}{
	{kindHandler, "profile handler"},
	{kindFilter, "filter"},
	{kindScorer, "scorer"},
	{kindPicker, "picker"},
	{kindProducer, "producer"},
	{kindAdmitter, "admitter"},
	{kindHook, "request/response hook"},
	{kindSaturation, "saturation detector"},
	{kindFairness, "fairness policy"},
	{kindOrdering, "ordering policy"},
	{kindUsageLimit, "usage-limit policy"},
	{kindDiscovery, "endpoint discovery plugin"},
	{kindScreener, "candidate screener"},
	{kindResponder, "responder"},
	{kindDataSource, "data source"},
	{kindFairnessSource, "fairness-ID source"},
}

// kindOf discovers p's kind by type assertion.
func kindOf(p scheduler.Plugin) pluginKind {
	var k pluginKind
	if _, ok := p.(scheduler.ProfileHandler); ok {
		k |= kindHandler
	}
	if _, ok := p.(scheduler.Filter); ok {
		k |= kindFilter
	}
	if _, ok := p.(scheduler.Scorer); ok {
		k |= kindScorer
	}
	if _, ok := p.(scheduler.Picker); ok {
		k |= kindPicker
	}
	if _, ok := p.(scheduler.Producer); ok {
		k |= kindProducer
	}
	if _, ok := p.(scheduler.Admitter); ok {
		k |= kindAdmitter
	}
	if isHook(p) {
		k |= kindHook
	}
	if _, ok := p.(scheduler.SaturationDetector); ok {
		k |= kindSaturation
	}
	if _, ok := p.(scheduler.FairnessPolicy); ok {
		k |= kindFairness
	}
	if _, ok := p.(scheduler.OrderingPolicy); ok {
		k |= kindOrdering
	}
	if _, ok := p.(scheduler.UsageLimitPolicy); ok {
		k |= kindUsageLimit
	}
	if _, ok := p.(scheduler.Discovery); ok {
		k |= kindDiscovery
	}
	if _, ok := p.(scheduler.Screener); ok {
		k |= kindScreener
	}
	if _, ok := p.(scheduler.Responder); ok {
		k |= kindResponder
	}
	if _, ok := p.(scheduler.DataSource); ok {
		k |= kindDataSource
	}
	if _, ok := p.(scheduler.FairnessSource); ok {
		k |= kindFairnessSource
	}
	return k
}

func isHook(p scheduler.Plugin) bool {
	switch p.(type) {
	case scheduler.PreRequest, scheduler.ResponseHeaders, scheduler.ResponseChunk, scheduler.ResponseComplete,
		scheduler.ResponseReporter:
		return true
	}
	return false
}

func (k pluginKind) has(other pluginKind) bool { return k&other != 0 }

// String lists the kinds, e.g. "filter and scorer"; a plugin with none of
// the scheduler's extension points is "a non-scheduling plugin".
func (k pluginKind) String() string {
	var names []string
	for _, n := range kindNames {
		if k.has(n.k) {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "a non-scheduling plugin"
	}
	article := "a "
	if strings.ContainsRune("aeiou", rune(names[0][0])) {
		article = "an "
	}
	return article + strings.Join(names, " and ")
}
