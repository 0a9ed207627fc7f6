// Command sluice is the Sluice command-line tool: it runs a hub and talks to one.
//
//	sluice hub                      run a hub (bbolt under ./sluice-data, 127.0.0.1:4000)
//	sluice create NAME              create a stream
//	sluice push NAME [MESSAGE...]   push messages (or stdin lines), print their indexes
//	sluice pull NAME                print the messages of a stream
//	sluice tail NAME                follow a stream
//
// Run "sluice help" for every command and "sluice COMMAND -help" for its flags and
// examples. The exit status is 0 on success, 1 on a failure, 2 on a bad command line, and
// 130 when Ctrl-C (or SIGTERM) stopped a command before it finished (a hub stopped that
// way exits 0 once its graceful stop is done). The behaviour lives in the libraries
// (package hub, core/client); this main parses flags and wires them together.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first SIGINT or SIGTERM ends ctx: the command stops gracefully. Then the
	// signals' default action is restored, so that a second one stops the process at once
	// (a hub whose graceful stop waits for a broker that does not answer).
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], &stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}
