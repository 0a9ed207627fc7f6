//go:build !race

package pulsar

// raceEnabled: see race_on_test.go.
const raceEnabled = false
