package main

import (
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// withoutDACOverride runs f on an OS thread without the capabilities that let root ignore
// file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a test can check how a
// command handles a directory it may not write to also when it runs as root, as in CI.
// Linux capabilities belong to a thread: f runs on a locked thread, the only one that
// loses them, and that thread ends with f's goroutine. f must make its file system calls
// on its own goroutine.
func withoutDACOverride(t *testing.T, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		const version3 = 0x20080522
		const dacOverride, dacReadSearch = 1, 2
		hdr := struct {
			version uint32
			pid     int32
		}{version: version3}
		var data [2]struct{ effective, permitted, inheritable uint32 }
		if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
			errc <- e
			return
		}
		data[0].effective &^= 1<<dacOverride | 1<<dacReadSearch
		if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
			errc <- e
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("dropping CAP_DAC_OVERRIDE on a thread: %v", err)
	}
}
