package scheduler

// StateDumper is a plugin that can show what it holds (an index, counters,
// a cache) to an operator asking why the EPP decided as it did. The EPP
// serves every dumper's state at GET /debug/plugins/state (llm-d's path).
// DumpState must be safe to call while requests run and must return a value
// encoding/json can encode; it should stay small (summaries and the
// largest few entries, not a whole index).
type StateDumper interface {
	Plugin
	DumpState() any
}
