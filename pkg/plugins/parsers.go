package plugins

import (
	"encoding/json"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Parser plugin types of upstream configs. OpenEPP's server parses OpenAI
// bodies itself (by path); naming only the passthrough parser switches body
// parsing off, so every request is routed on load alone.
const (
	OpenAIParserType      = "openai-parser"
	PassthroughParserType = "passthrough-parser"
)

// Parser is a configured request parser.
type Parser struct {
	name scheduler.TypedName
}

// Passthrough reports whether this parser leaves bodies unparsed.
func (p *Parser) Passthrough() bool { return p.name.Type == PassthroughParserType }

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
			Summary: "Parses OpenAI completions, chat, responses and embeddings bodies (the default)."},
		{Type: PassthroughParserType, Factory: parserFactory(PassthroughParserType), Params: struct{}{},
			Summary: "Leaves bodies unparsed; requests are routed without prompt-aware scoring."},
	}
}
