//go:build race

package metrics

// raceEnabled skips CPU-budget assertions, which the race detector's
// 5-10x overhead would make meaningless.
const raceEnabled = true
