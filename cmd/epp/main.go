// Command epp is the OpenEPP Endpoint Picker. See `epp --help` and README.md.
package main

import "github.com/openepp/openepp/pkg/epp"

func main() { epp.Main() }
