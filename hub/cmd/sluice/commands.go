package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/sluicehq/sluice/conformance/certify"
)

// stdio is where a command reads and writes; tests substitute buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is one sluice subcommand. To add one, add a file to this package whose init
// calls register.
type command struct {
	// name is the word after "sluice".
	name string
	// summary is the one-line description shown by "sluice help".
	summary string
	// usage is the synopsis after "sluice NAME", e.g. "[flags] STREAM [MESSAGE...]".
	usage string
	// help is the long description with examples, shown by -help.
	help string
	// flags declares the command's flags on fs and returns the function that runs it with
	// the remaining arguments, after fs was parsed.
	flags func(fs *flag.FlagSet) func(ctx context.Context, io *stdio, args []string) error
}

// synopsis is "sluice NAME USAGE".
func (c *command) synopsis() string { return strings.TrimSpace("sluice " + c.name + " " + c.usage) }

var commands = map[string]*command{}

// register adds c to the dispatcher table; a duplicate name panics.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("sluice: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks errors caused by a bad command line (exit status 2), as certify.ErrUsage
// does for the conformance command.
var errUsage = errors.New("usage")

// errInterrupted marks the error of a command that Ctrl-C (SIGINT) or SIGTERM stopped
// before it finished: run prints it and returns exitInterrupted.
var errInterrupted = errors.New("interrupted")

// exitInterrupted is the exit status of a command interrupted before it finished: 128 plus
// SIGINT's number, as a shell reports a program that SIGINT ended.
const exitInterrupted = 130

// interrupted returns errInterrupted, followed by what detail says (what was done, what
// was not) when it is not empty.
func interrupted(detail string) error {
	if detail == "" {
		return errInterrupted
	}
	return fmt.Errorf("%w%s", errInterrupted, detail)
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// cliMessage is the text of err for the command line. The "sluice: " that starts the text
// of package core's errors is left out: the line already starts with "sluice COMMAND: ".
func cliMessage(err error) string {
	return strings.ReplaceAll(strings.TrimPrefix(err.Error(), "sluice: "), ": sluice: ", ": ")
}

// run dispatches args to a command and returns the process exit status: 0 on success, 1 on
// failure, 2 on a bad command line, exitInterrupted (130) when ctx ended (Ctrl-C) before a
// command that talks to a hub or measures backends finished.
func run(ctx context.Context, args []string, sio *stdio) int {
	if len(args) == 0 {
		printCommands(sio.err)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		switch {
		case len(args) > 1 && (args[1] == "-version" || args[1] == "--version"):
			args = []string{name, "version"}
		case len(args) > 1 && slices.Contains([]string{"help", "-h", "-help", "--help"}, args[1]):
			args = args[:1] // "sluice help help": this list
		}
		if len(args) > 1 {
			c := commands[args[1]]
			if c == nil {
				fmt.Fprintf(sio.err, "sluice: unknown command %q\n\n", args[1])
				printCommands(sio.err)
				return 2
			}
			fs := newFlagSet(c, sio.out)
			c.flags(fs)
			fs.Usage()
			return 0
		}
		printCommands(sio.out)
		return 0
	case "-version", "--version":
		name = "version"
	}
	c := commands[name]
	if c == nil {
		fmt.Fprintf(sio.err, "sluice: unknown command %q\n\n", name)
		printCommands(sio.err)
		return 2
	}
	fs := newFlagSet(c, sio.err)
	runCmd := c.flags(fs)
	// On a bad flag, Parse has printed the error; badFlagUsage adds the short usage.
	fs.Usage = func() {}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// Asked for, as "sluice help COMMAND": on standard output (| less).
			help := newFlagSet(c, sio.out)
			c.flags(help)
			help.Usage()
			return 0
		}
		badFlagUsage(sio.err, c, fs, err)
		return 2
	}
	if err := runCmd(ctx, sio, fs.Args()); err != nil {
		fmt.Fprintf(sio.err, "sluice %s: %s\n", name, cliMessage(err))
		if errors.Is(err, errUsage) || errors.Is(err, certify.ErrUsage) {
			fmt.Fprintf(sio.err, "usage: %s (see sluice %s -help)\n", c.synopsis(), name)
			return 2
		}
		if errors.Is(err, errInterrupted) {
			return exitInterrupted
		}
		return 1
	}
	return 0
}

func newFlagSet(c *command, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+c.name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "usage: %s\n\n%s\n\n", c.synopsis(), strings.TrimSpace(c.help))
		if hasFlags(fs) {
			fmt.Fprintln(w, "flags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// badFlagUsage follows flag's error message for a bad command line with the failing flag's
// own line of -help (its type, meaning and default) and the synopsis, instead of the whole
// help, which would scroll the error out of sight.
func badFlagUsage(w io.Writer, c *command, fs *flag.FlagSet, err error) {
	if m := badFlagName.FindStringSubmatch(err.Error()); m != nil {
		if f := fs.Lookup(m[1]); f != nil {
			one := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
			one.SetOutput(w)
			one.Var(f.Value, f.Name, f.Usage)
			one.Lookup(f.Name).DefValue = f.DefValue
			one.PrintDefaults()
		}
	}
	fmt.Fprintf(w, "usage: %s (see sluice %s -help)\n", c.synopsis(), c.name)
}

// badFlagName finds the flag named in flag's error for a bad value.
var badFlagName = regexp.MustCompile(`for flag -([^:\s]+):`)

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "sluice: reliable, end-to-end encrypted messaging through streams.")
	fmt.Fprintln(w, "\nusage: sluice COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "  %s\t%s\n", n, commands[n].summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun \"sluice COMMAND -help\" for a command's flags and examples.")
}

// fromEnv adds to err, a usage error about the value of flag -name, that the value came
// from the environment variable env, when the command line did not give -name: the user
// may not remember exporting it.
func fromEnv(err error, fs *flag.FlagSet, name, env string) error {
	if err == nil || flagSet(fs, name) || os.Getenv(env) == "" {
		return err
	}
	return fmt.Errorf("%w (the value of -%s comes from %s: correct it, or give -%s)", err, name, env, name)
}

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
