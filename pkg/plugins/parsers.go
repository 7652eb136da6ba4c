package plugins

import (
	"encoding/json"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Parser plugin types of upstream configs. OpenEPP's server parses bodies
// itself, choosing the API by path; the configured parsers say which API
// families it parses. A request of a family no configured parser covers is
// routed on load alone, as an unknown path is; naming only the passthrough
// parser switches body parsing off.
const (
	OpenAIParserType      = "openai-parser"
	AnthropicParserType   = "anthropic-parser"
	VLLMHTTPParserType    = "vllmhttp-parser"
	SGLangHTTPParserType  = "sglanghttp-parser"
	PassthroughParserType = "passthrough-parser"
)

// Parser is a configured request parser.
type Parser struct {
	name scheduler.TypedName
}

// Covers returns the APIs whose bodies this parser reads.
func (p *Parser) Covers() request.APISet {
	switch p.name.Type {
	case OpenAIParserType:
		return request.OpenAIAPIs
	case AnthropicParserType:
		return request.AnthropicAPIs
	case VLLMHTTPParserType:
		// llm-d's current vllmhttp-parser hands other paths to an embedded
		// OpenAI parser, so one instance covers a vLLM server's whole HTTP
		// surface (its older one needed openai-parser beside it: covered
		// either way).
		return request.GenerateAPIs | request.OpenAIAPIs
	case SGLangHTTPParserType:
		return request.SGLangAPIs
	}
	return 0
}

// TypedName implements scheduler.Plugin.
func (p *Parser) TypedName() scheduler.TypedName { return p.name }

func parserFactory(typ string) scheduler.Factory {
	return func(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
		var none struct{}
		if err := scheduler.DecodeParams(raw, &none); err != nil {
			return nil, err
		}
		return &Parser{name: scheduler.TypedName{Type: typ, Name: name}}, nil
	}
}

func parserRegistrations() []scheduler.Registration {
	return []scheduler.Registration{
		{Type: OpenAIParserType, Factory: parserFactory(OpenAIParserType), Params: struct{}{},
			Summary: "Parses OpenAI completions, chat, responses, embeddings and conversations bodies (a default)."},
		{Type: AnthropicParserType, Factory: parserFactory(AnthropicParserType), Params: struct{}{},
			Summary: "Parses Anthropic Messages bodies (/v1/messages, as vLLM and SGLang serve it): the system prompt, without Claude Code's per-request billing block, then the messages are what prefix matching hashes (a default)."},
		{Type: VLLMHTTPParserType, Factory: parserFactory(VLLMHTTPParserType), Params: struct{}{},
			Summary: "Parses vLLM's token-in /inference/v1/generate bodies (RL frameworks): the token_ids are the prompt, matched token for token; the model is optional. Also the OpenAI APIs, as llm-d's does (a default)."},
		{Type: SGLangHTTPParserType, Factory: parserFactory(SGLangHTTPParserType), Params: struct{}{},
			Summary: "Parses SGLang's native /generate bodies: text or input_ids is the prompt (IDs matched token for token), lora_path the model, meta_info the usage (a default)."},
		{Type: PassthroughParserType, Factory: parserFactory(PassthroughParserType), Params: struct{}{},
			Summary: "Leaves bodies unparsed; requests are routed without prompt-aware scoring."},
	}
}
