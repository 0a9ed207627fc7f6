//go:build race

package pulsar

// raceEnabled: the race detector is on. pulsar-client-go v0.19.0 has a data race between a
// producer's reconnect (grabCnx writes producerName) and a send issued meanwhile
// (internalSingleSend reads it), so tests that restart the broker do not send during the
// reconnect when it is on.
const raceEnabled = true
