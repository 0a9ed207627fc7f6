package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, "127.0.0.1:0", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var reads []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "billing read index ") {
			reads = append(reads, strings.Fields(l)[3])
		}
	}
	// Two consumers with the same client_id: each message is read once, in order.
	if got := strings.Join(reads, ","); got != "0:,1:,2:,3:" {
		t.Fatalf("indexes read %q, want 0..3 once each\n%s", got, out.String())
	}
}
