package topology

import (
	"fmt"
	"strings"
)

// Level is the tightest topology level two endpoints share.
type Level uint8

// Levels from the tightest; Apart shares none. A shared host implies the
// rest, but each level is compared on its own: a value missing on either
// side never matches, not even two missing ones.
const (
	Host Level = iota
	Rack
	Zone
	Region
	Apart
)

var levelNames = [...]string{Host: "host", Rack: "rack", Zone: "zone", Region: "region", Apart: "none"}

func (l Level) String() string { return levelNames[l] }

// ParseLevel reads a level as configured: host, rack, zone or region.
func ParseLevel(s string) (Level, error) {
	for l, name := range levelNames[:Apart] {
		if strings.EqualFold(s, name) {
			return Level(l), nil
		}
	}
	return Apart, fmt.Errorf("unknown level %q (known: host, rack, zone, region)", s)
}

// proximity is topology-affinity-scorer's score for each level, shaped by
// KV-transfer bandwidth rather than evenly spaced (llm-d's curve): NVLink
// within a host, one switch within a rack, several hops within a zone,
// inter-datacenter links within a region.
var proximity = [...]float64{Host: 1, Rack: 0.2, Zone: 0.05, Region: 0.02, Apart: 0}

// Location is where an endpoint runs; empty fields are unknown.
type Location struct {
	Host, Rack, Zone, Region string
}

// Known reports whether any level of l is known.
func (l Location) Known() bool { return l != Location{} }

func (l Location) at(level Level) string {
	switch level {
	case Host:
		return l.Host
	case Rack:
		return l.Rack
	case Zone:
		return l.Zone
	case Region:
		return l.Region
	}
	return ""
}

// Shared returns the tightest level at which a and b are both known and
// equal, Apart when there is none.
func Shared(a, b Location) Level {
	for l := Host; l < Apart; l++ {
		if v := a.at(l); v != "" && v == b.at(l) {
			return l
		}
	}
	return Apart
}

// knownAt reports whether a and b both know level l, so that a mismatch
// there shows they are apart rather than unknown.
func knownAt(a, b Location, l Level) bool { return a.at(l) != "" && b.at(l) != "" }
