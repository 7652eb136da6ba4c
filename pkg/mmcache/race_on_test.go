//go:build race

package mmcache

// raceEnabled: allocation counts are not checked under the race detector.
const raceEnabled = true
