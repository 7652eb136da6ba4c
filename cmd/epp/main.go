// Command epp is the OpenEPP Endpoint Picker. See `epp --help` and README.md.
// `epp simulate` evaluates a scheduler config in the fleet simulation
// instead (`epp simulate --help`).
package main

import (
	"os"

	"github.com/openepp/openepp/pkg/epp"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "simulate" {
		epp.SimulateMain(os.Args[2:])
		return
	}
	epp.Main()
}
