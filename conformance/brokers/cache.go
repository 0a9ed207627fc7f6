package brokers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// CacheDir returns (and creates) the download cache directory for sub:
// $SLUICE_CACHE/sub, or the user cache directory + "/sluice/" + sub.
func CacheDir(sub string) (string, error) {
	base := os.Getenv("SLUICE_CACHE")
	if base == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("cache directory: %w (set SLUICE_CACHE)", err)
		}
		base = filepath.Join(uc, "sluice")
	}
	dir := filepath.Join(base, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	return dir, nil
}

// fillCacheOnce runs fill to fill the cache directory dir unless a fill of it completed
// before (dir/.complete exists). Processes and goroutines sharing dir take turns
// (lockDir): one fills it, the others wait and then find its marker. A fill that failed or
// was cut short (a crash, Ctrl-C) leaves no marker, so the next call fills again: fill
// must first clear what such a fill may have left.
func fillCacheOnce(ctx context.Context, dir string, fill func() error) error {
	marker := filepath.Join(dir, ".complete")
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if err := fill(); err != nil {
		return err
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return fmt.Errorf("brokers: %w", err)
	}
	return nil
}

// lockDir takes the exclusive lock of dir (a flock on dir/.lock), waiting for another process
// or goroutine that holds it until ctx ends. The returned function releases it.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("brokers: lock %s: %w", dir, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("brokers: lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("brokers: waiting for another process to fill %s: %w", dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
