// Package requestcontrol holds the built-in plugins that shape how a request
// is handled before it is scheduled, rather than where it goes: llm-d's
// agent-identity, which gives every coding-agent session its own
// flow-control flow. One file per plugin.
package requestcontrol
