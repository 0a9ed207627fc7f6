package main

import (
	"io"
	"log/slog"
)

// discard is the logger of the client-side libraries unless -v is given.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))
