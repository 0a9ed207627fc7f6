//go:build !unix

package bistream_test

import "time"

// processCPU reports that the process's CPU time is not known on this platform.
func processCPU() (time.Duration, bool) { return 0, false }
