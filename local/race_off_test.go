//go:build !race

package local

// raceEnabled is true when the race detector is on: memory measurements
// are slow and skewed then.
const raceEnabled = false
