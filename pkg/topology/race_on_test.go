//go:build race

package topology

// raceEnabled: allocation counts are not checked under the race detector.
const raceEnabled = true
