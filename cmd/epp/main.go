// Command epp is the OpenEPP Endpoint Picker. See `epp --help` and README.md.
// `epp simulate` evaluates a scheduler config in the fleet simulation
// instead (`epp simulate --help`), and `epp cost` times its routing
// decisions (`epp cost --help`).
package main

import "github.com/openepp/openepp/pkg/epp"

func main() { epp.Main() }
