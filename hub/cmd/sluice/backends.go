package main

// The backends the binary can open by URL (see "sluice hub -help"). Add a blank import here
// to make another backend's scheme available.
import (
	_ "github.com/sluicehq/sluice/backends/bbolt"
	_ "github.com/sluicehq/sluice/backends/kafka"
	_ "github.com/sluicehq/sluice/backends/kinesis"
	_ "github.com/sluicehq/sluice/backends/memory"
	_ "github.com/sluicehq/sluice/backends/pulsar"
	_ "github.com/sluicehq/sluice/backends/remote"
)
