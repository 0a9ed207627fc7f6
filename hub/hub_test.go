package hub_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

func openMemory(t *testing.T) *core.Backend {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Backend{Storage: s, Index: s}
}

func openBbolt(t *testing.T) *core.Backend {
	t.Helper()
	s, err := bbolt.New(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Backend{Storage: s, Index: s}
}

func TestHubMemory(t *testing.T) { hubtest.Run(t, openMemory) }

func TestHubBbolt(t *testing.T) { hubtest.Run(t, openBbolt) }

func TestNewOptions(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	for name, opt := range map[string]hub.Option{
		"max message size 0":    hub.WithMaxMessageSize(0),
		"max message size huge": hub.WithMaxMessageSize(1 << 20),
		"batch 0":               hub.WithMaxBatch(0, 10),
		"queue 0":               hub.WithQueueLen(0),
		"pull limit 0":          hub.WithMaxPullLimit(0),
		"negative wait":         hub.WithMaxPullWait(-1),
		"parked 0":              hub.WithMaxParkedPulls(0),
		"parked per conn 0":     hub.WithMaxParkedPullsPerConnection(0),
		"connections 0":         hub.WithMaxConnections(0),
		"negative idle":         hub.WithIdleTimeout(-1),
		"idle 1ns":              hub.WithIdleTimeout(time.Nanosecond),
		"idle below minimum":    hub.WithIdleTimeout(hub.MinIdleTimeout - 1),
		"negative worker idle":  hub.WithWorkerIdleTimeout(-1),
		"fetches 0":             hub.WithMaxConcurrentFetches(0),
		"nil logger":            hub.WithLogger(nil),
		"nil node":              hub.WithNode(nil),
	} {
		if h, err := hub.New(b, opt); !errors.Is(err, core.ErrInvalidOption) {
			if h != nil {
				h.Close()
			}
			t.Errorf("%s: err = %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := hub.New(&core.Backend{}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("empty backend: err = %v, want ErrInvalidOption", err)
	}
	for _, d := range []time.Duration{0, hub.MinIdleTimeout} {
		h, err := hub.New(b, hub.WithIdleTimeout(d))
		if err != nil {
			t.Errorf("idle timeout %v: %v", d, err)
			continue
		}
		h.Close()
	}
	h, err := hub.New(b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.MaxMessageSize(); got != hub.MaxFrameMessageSize {
		t.Errorf("default max message size on a 1 MiB backend = %d, want %d", got, hub.MaxFrameMessageSize)
	}
}

// An address that is no [HOST]:PORT is an invalid option, refused by CheckListenAddr and
// by Listen before it binds anything; one that is (port 0, a service name) is accepted.
func TestCheckListenAddr(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:no-such-service", ""} {
		if err := hub.CheckListenAddr(addr); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("CheckListenAddr(%q) = %v, want an error matching core.ErrInvalidOption", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", ":4000", "[::1]:0", "localhost:65535"} {
		if err := hub.CheckListenAddr(addr); err != nil {
			t.Errorf("CheckListenAddr(%q) = %v, want nil", addr, err)
		}
	}
	h, err := hub.New(openMemory(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if a, err := h.Listen("127.0.0.1"); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("Listen(127.0.0.1) = %v, %v; want an error matching core.ErrInvalidOption", a, err)
	}
	if _, err := h.Listen("127.0.0.1:0"); err != nil {
		t.Errorf("Listen after a refused address: %v", err)
	}
}
