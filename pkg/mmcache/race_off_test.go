//go:build !race

package mmcache

const raceEnabled = false
