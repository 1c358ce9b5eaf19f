// Command peername is the operator's tool for a peername cloud: it creates
// identity key files, prints the DNS names an identity may publish, resolves a
// peer name over the DRT overlay directly (without DNS, printing the verified
// record and the path the search took), invites a helper with a one-time code
// and accepts such an invitation, keeps contacts, and runs the overlay
// simulator.
//
// Usage:
//
//	peername keygen FILE
//	peername name -key FILE [-zone ZONE] CLASSIFIER
//	peername name -unsecured [-zone ZONE] CLASSIFIER
//	peername resolve [-bootstrap ADDR]... [-cloud NAME] [-timeout D] NAME
//	peername invite [-bootstrap ADDR]... [-service SVC/PROTO/PORT]... [-addr IP]... [-for D] [-json]
//	peername accept [-bootstrap ADDR]... [-save PETNAME] [-json] CODE
//	peername contacts [-state DIR] list | add PETNAME NAME | remove PETNAME
//	peername sim [flags]
//	peername version
//
// Run "peername COMMAND -h" for the flags of a command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (not found, I/O error, ...)
	exitUsage   = 2 // bad command line
)

// command is one subcommand of the CLI.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command may touch besides its arguments: it makes every
// command runnable in-process by tests.
type env struct {
	stdout, stderr io.Writer
	rand           io.Reader // key generation; nil means crypto/rand
}

// errUsage marks a command-line error: the command has already printed what
// was wrong and the caller exits with exitUsage.
var errUsage = errors.New("usage error")

// registry holds the subcommands; each registers itself from its own file.
var registry = map[string]command{}

func register(name string, c command) { registry[name] = c }

func commands() map[string]command { return registry }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// run executes the command line args (without the program name) and returns
// the process exit code.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return exitOK
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(e.stderr, "peername: unknown command %q\n\n", name)
		usage(e.stderr)
		return exitUsage
	}
	err := cmd.run(ctx, e, args[1:])
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	default:
		var ec exitCodeError
		if errors.As(err, &ec) {
			return ec.code
		}
		fmt.Fprintf(e.stderr, "peername %s: %v\n", name, err)
		return exitFailure
	}
}

// exitCodeError lets a command (sim) choose the exit code itself after it has
// reported its own outcome.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "peername: the operator's tool for peer names on the DRT overlay")
	fmt.Fprintln(w, "\nUsage:\n  peername COMMAND [flags] [args]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun \"peername COMMAND -h\" for the flags of a command.")
}

// newFlagSet returns a FlagSet for a subcommand that prints its usage line
// and flags to e.stderr (e.stdout for an explicit -h).
func newFlagSet(e *env, name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("peername "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: peername %s %s\n\n%s\n", name, synopsis, about)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses flags and positional arguments in any order (so that
// "name CLASSIFIER -zone example." works as well as the flags-first form)
// and checks the number of positional arguments (maxPos < 0: no limit). A
// "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage // the flag package has printed the problem and the usage
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		// Parse stopped at a positional argument; take it and go on.
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minPos:
		fmt.Fprintf(fs.Output(), "%s: missing argument\n", fs.Name())
	case maxPos >= 0 && len(pos) > maxPos:
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), strings.Join(pos[maxPos:], " "))
	default:
		return pos, nil
	}
	fs.Usage()
	return nil, errUsage
}
