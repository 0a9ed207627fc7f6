//go:build !linux

package main

import "testing"

// withoutDACOverride runs f: outside Linux the tests that use it run as a user that file
// permissions apply to, or skip.
func withoutDACOverride(_ *testing.T, f func()) { f() }
