// Command custom-epp is the OpenEPP endpoint picker with one extra,
// out-of-tree plugin compiled in. Build your own the same way:
//
//	go build -o custom-epp ./examples/custom-epp
//	custom-epp --endpoints ... --config-file my-config.yaml
//
// where my-config.yaml uses `type: zone-affinity-scorer` like a built-in.
package main

import (
	"github.com/openepp/openepp/examples/custom-epp/zoneaffinity"
	"github.com/openepp/openepp/pkg/epp"
)

func main() { epp.Main(epp.WithPlugins(zoneaffinity.Registration())) }
