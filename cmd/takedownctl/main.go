// Command takedownctl is the command line of the takedown HTTP API, for
// issuers (submit, get, list, watch, withdraw, clarify), providers (get,
// list, feedback) and operators (summary, parked, replay).
//
//	export TAKEDOWN_URL=https://takedown.example TAKEDOWN_TOKEN=…
//	takedownctl submit -f order.json
//	takedownctl submit -f batch.ndjson
//	takedownctl watch 5f0c…
//
// Exit codes: 0 success, 2 usage error, 3 rejected by the server (a 4xx
// answer, or a batch with rejected lines), 4 transport or server failure.
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
	"time"
)

// Exit codes.
const (
	exitOK        = 0
	exitUsage     = 2
	exitRejected  = 3
	exitTransport = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli carries what every command needs.
type cli struct {
	client *client
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

var commands = map[string]command{
	"submit":   {"submit notices: from flags, a JSON file, or an NDJSON batch (issuers)", cmdSubmit},
	"get":      {"show one notice: state, deadline, timeline, delivery attempts", cmdGet},
	"list":     {"list notices with filters, as a table or JSON", cmdList},
	"watch":    {"follow a notice's events live until it is terminal", cmdWatch},
	"withdraw": {"withdraw an open notice (issuers)", cmdWithdraw},
	"clarify":  {"answer a provider's request for clarification (issuers)", cmdClarify},
	"feedback": {"report on a notice: acknowledged, removed, blocked… (providers)", cmdFeedback},
	"summary":  {"cluster summary: notices by state, overdue by provider (operators)", cmdSummary},
	"parked":   {"list parked messages with their reasons (operators)", cmdParked},
	"replay":   {"replay a failed notice, or a parked message with -parked (operators)", cmdReplay},
	"report":   {"transparency report of a period (TCO Art. 7/8) as Markdown, CSV or JSON", cmdReport},
}

// usageError marks errors in how the command was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("takedownctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr(getenv, "TAKEDOWN_URL", "http://127.0.0.1:8080"), "API base URL (env TAKEDOWN_URL)")
	token := fs.String("token", getenv("TAKEDOWN_TOKEN"), "bearer token (env TAKEDOWN_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of each request")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: takedownctl [flags] <command> [command flags]\n\nCommands:\n")
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-9s %s\n", n, commands[n].summary)
		}
		fmt.Fprintf(stderr, "\nRun takedownctl <command> -help for its flags.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nExit codes: 0 success, 2 usage error, 3 rejected by the server, 4 transport or server failure.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "takedownctl: unknown command %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	c := &cli{client: newClient(strings.TrimRight(*server, "/"), *token, *timeout), stdin: stdin, stdout: stdout, stderr: stderr}
	err := cmd.run(ctx, c, fs.Args()[1:])
	var ue *usageError
	var ae *apiError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "takedownctl %s: %v\n", fs.Arg(0), err)
		return exitUsage
	case errors.As(err, &ae) && ae.status < 500:
		fmt.Fprintf(stderr, "takedownctl %s: %v\n", fs.Arg(0), err)
		return exitRejected
	case errors.Is(err, errRejectedLines):
		return exitRejected
	default:
		fmt.Fprintf(stderr, "takedownctl %s: %v\n", fs.Arg(0), err)
		return exitTransport
	}
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// flags builds a command's flag set with a -help that explains it.
func flags(c *cli, name, usage, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: takedownctl %s %s\n\n%s\n", name, usage, about)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(c.stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses a command's flags; flags may follow the positional
// arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
