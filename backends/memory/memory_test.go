package memory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

func harness() conformance.Harness {
	return conformance.Harness{CreateMaxPartitions: true, Open: func(context.Context) (*core.Backend, error) {
		s, err := memory.New(&memory.Options{MaxMessageSize: 64 << 10})
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: s, Index: s}, nil
	}}
}

func TestConformance(t *testing.T) {
	t.Run("Storage", func(t *testing.T) { conformance.RunStorage(t, harness()) })
	t.Run("IndexStorage", func(t *testing.T) { conformance.RunIndexStorage(t, harness()) })
}

// TestConformanceDefaults runs the suite through the registry with the default 1 MiB limit.
func TestConformanceDefaults(t *testing.T) {
	h := conformance.Harness{CreateMaxPartitions: true, Open: func(ctx context.Context) (*core.Backend, error) {
		return core.Open(ctx, "memory://")
	}}
	conformance.RunStorage(t, h)
}

func BenchmarkStorage(b *testing.B) { conformance.BenchmarkStorage(b, harness()) }

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	b, err := core.Open(ctx, "memory://?max_message_size=100")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.Storage.Capabilities().MaxMessageSize; got != 100 {
		t.Errorf("MaxMessageSize = %d, want 100", got)
	}
	if b.Index == nil {
		t.Error("Backend.Index is nil")
	}
	if b, err := core.Open(ctx, "memory:///"); err != nil {
		t.Errorf("Open(\"memory:///\"): %v", err)
	} else {
		b.Close()
	}
	for _, u := range []string{
		"memory://?max_message_size=0",
		"memory://?max_message_size=x",
		"memory://?size=1",
		"memory://?max_message_size=10&max_message_size=20",
		"memory://host",
		"memory:///some/path",
		"memory://user:secret@",
	} {
		if b, err := core.Open(ctx, u); !errors.Is(err, core.ErrInvalidOption) {
			if b != nil {
				b.Close()
			}
			t.Errorf("Open(%q) = %v, want an error matching ErrInvalidOption", u, err)
		}
	}
}

func TestNewInvalid(t *testing.T) {
	if _, err := memory.New(&memory.Options{MaxMessageSize: -1}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("New(MaxMessageSize: -1) = %v, want ErrInvalidOption", err)
	}
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Capabilities(); got.MaxMessageSize != memory.DefaultMaxMessageSize || got.MaxPartitions != core.MaxPartitions || !got.DenseIndex || got.Persistent {
		t.Errorf("default capabilities = %v", got)
	}
}

// TestDeleteStreamDropsIndexes: DeleteStream drops the indexes saved for the deleted stream,
// and only those.
func TestDeleteStreamDropsIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []string{"s", "other"} {
		if _, err := s.CreateStream(ctx, n, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveIndex(ctx, "c", n, 0, 7); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteStream(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetIndex(ctx, "c", "s", 0); !errors.Is(err, core.ErrIndexNotFound) {
		t.Errorf("GetIndex of the deleted stream: %v, want ErrIndexNotFound", err)
	}
	if i, err := s.GetIndex(ctx, "c", "other", 0); err != nil || i != 7 {
		t.Errorf("GetIndex of another stream = %d, %v; want 7, nil", i, err)
	}
}
