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
	"token-producer": "llm-d's tokenizer needs a vLLM render server or a tokenizer sidecar, which OpenEPP does not call; " +
		"OpenEPP's plugins estimate prompt tokens from the prompt's bytes themselves, so remove it",
	"tokenizer": "the old name of llm-d's token-producer, which needs a vLLM render server or a tokenizer sidecar; " +
		"OpenEPP's plugins estimate prompt tokens from the prompt's bytes themselves, so remove it",
	"precise-prefix-cache-producer": "llm-d's prefix index from the model servers' KV events (ZMQ) is not implemented; " +
		"use prefix-cache-scorer, which creates OpenEPP's approx-prefix-cache-producer",
	"precise-prefix-cache-scorer": "llm-d's prefix scoring from the model servers' KV events (ZMQ) is not implemented; " +
		"use prefix-cache-scorer, which creates OpenEPP's approx-prefix-cache-producer",
	"data-parallel-profile-handler": "llm-d's deprecated data-parallel handler is not implemented; list every data-parallel " +
		"rank's port in the InferencePool's targetPorts instead (each port is an endpoint)",
	"vllmgrpc-parser": "OpenEPP routes HTTP model servers (OpenAI and Anthropic JSON); gRPC model servers are not supported",
	"vllmhttp-parser": "llm-d's parser for vLLM's token-in /inference/v1/generate is not implemented; openai-parser and " +
		"anthropic-parser cover the OpenAI and Anthropic APIs",
	"sglanghttp-parser":            "llm-d's SGLang-native parser is not implemented; openai-parser covers SGLang's OpenAI API",
	"vertexai-parser":              "llm-d's Vertex AI parser is not implemented; openai-parser covers the OpenAI API",
	"mm-embeddings-cache-producer": "multimodal encoder-cache routing is not implemented; remove it and its scorer",
	"mm-embeddings-cache-scorer":   "multimodal encoder-cache routing is not implemented; remove it and its producer",
}

// UnsupportedTypes lists the plugin types refused with a reason, sorted.
func UnsupportedTypes() []string { return slices.Sorted(maps.Keys(unsupportedTypes)) }
