package brokers

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestPulsar starts a Pulsar standalone, checks it serves produce and read and listens on
// loopback only, restarts it abruptly on the same ports and data, and checks it serves
// again.
func TestPulsar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Pulsar broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	p, err := StartPulsar(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "pulsar", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if err := PulsarPing(ctx, p.URL); err != nil {
		t.Fatalf("ping after start: %v", err)
	}
	if p.proc != nil {
		checkLoopbackOnly(t, "pulsar", p.proc.Pid())
	}
	if !p.CanRestart() {
		return
	}
	url := p.URL
	if err := p.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if p.URL != url {
		t.Fatalf("URL changed across restart: %s, then %s", url, p.URL)
	}
	if err := PulsarPing(ctx, p.URL); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestDefaultPulsarAdminURL(t *testing.T) {
	for in, want := range map[string]string{
		"pulsar://127.0.0.1:6650":           "http://127.0.0.1:8080",
		"pulsar://broker.example:6650,b2:1": "http://broker.example:8080",
		"pulsar+ssl://h:6651":               "http://h:8080",
	} {
		if got := defaultPulsarAdminURL(in); got != want {
			t.Errorf("defaultPulsarAdminURL(%q) = %q, want %q", in, got, want)
		}
	}
}
