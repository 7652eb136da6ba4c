//go:build race

package plugins

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation budgets are not checked under it.
const raceEnabled = true
