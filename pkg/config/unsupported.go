package config

import (
	"maps"
	"slices"
)

// unsupportedTypes says why OpenEPP refuses plugin types that GIE or llm-d
// configs name, and what to do instead, so that a copied config fails with
// advice rather than a list of every known type. A type registered out of
// tree (epp.WithPlugins) never gets here.
var unsupportedTypes = map[string]string{
	"precise-prefix-cache-scorer": "llm-d's deprecated one-plugin form is not implemented; list a token-producer (backend vllm), " +
		"a precise-prefix-cache-producer and a prefix-cache-scorer whose prefixMatchInfoProducerName names the producer",
	"data-parallel-profile-handler": "llm-d's deprecated data-parallel handler is not implemented; list every data-parallel " +
		"rank's port in the InferencePool's targetPorts instead (each port is an endpoint)",
	"vllmgrpc-parser": "OpenEPP routes HTTP model servers (OpenAI and Anthropic JSON); gRPC model servers are not supported",
	"vertexai-parser": "llm-d's Vertex AI parser is not implemented; openai-parser covers the OpenAI API",
}

// UnsupportedTypes lists the plugin types refused with a reason, sorted.
func UnsupportedTypes() []string { return slices.Sorted(maps.Keys(unsupportedTypes)) }
