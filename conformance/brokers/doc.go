// Package brokers starts real brokers for tests: Apache Kafka, Apache Pulsar and
// kinesis-mock, as local processes (the default), as testcontainers when a Docker daemon
// answers, or not at all when an environment variable points at an existing broker.
//
// # Selection
//
// For each broker the launcher picks, in order:
//  1. the external broker named by its environment variable (KAFKA_BROKERS, PULSAR_URL,
//     KINESIS_ENDPOINT);
//  2. a testcontainers container, when a Docker daemon answers and SLUICE_BROKERS is not
//     "process";
//  3. a local process, downloaded on first use into the cache directory
//     ($SLUICE_CACHE, default the user cache directory + "/sluice").
//
// SLUICE_BROKERS=process forces local processes; SLUICE_BROKERS=docker forces containers.
//
// # Required brokers
//
// Under CI=true (or SLUICE_REQUIRE_BROKERS=1) a broker that cannot start FAILS the test with
// the launcher's log tail: a skipped backend is never a pass. Elsewhere the test is skipped
// with the reason, so `go test ./...` on a laptop without Java still runs everything else,
// and `go test -short` does not start brokers at all.
//
// Local processes bind 127.0.0.1 on free ports, run in their own process group, and are
// killed with the whole group when the test ends, when the test binary is interrupted
// (SIGINT/SIGTERM) and, on Linux, when the test binary dies (parent-death signal).
package brokers
