// Command providersim runs simulated hosting providers against a takedown
// pipeline's NATS server: each reads its deliver subject with its own
// durable consumer and answers on its feedback subject.
//
//	providersim -nats-url nats://127.0.0.1:4222 \
//	    -provider videohost=prompt -provider filedrop=slow:20s -provider quiet=silent
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/internal/providersim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "providersim:", err)
		os.Exit(2)
	}
}

type providerFlags []providersim.Provider

func (p *providerFlags) String() string { return fmt.Sprint(*p) }
func (p *providerFlags) Set(s string) error {
	v, err := providersim.ParseProvider(s)
	if err != nil {
		return err
	}
	*p = append(*p, v)
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("providersim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", getenv("TAKEDOWN_NATS_URL"), "NATS server URL (env TAKEDOWN_NATS_URL)")
	prefix := fs.String("subject-prefix", "takedown", "NATS subject prefix")
	var providers providerFlags
	fs.Var(&providers, "provider", "a simulated provider as id=behaviour[:delay]; repeat for more.\nbehaviours: prompt, slow, late, blocking, declining, silent")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: providersim -nats-url URL -provider id=behaviour[:delay] ...\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *natsURL == "" || len(providers) == 0 {
		fs.Usage()
		return errors.New("need -nats-url and at least one -provider")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	nc, err := nats.Connect(*natsURL, nats.Name("providersim"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = fmt.Sprintf("%s=%s", p.ID, p.Behaviour)
	}
	log.Info("simulating providers", "providers", strings.Join(names, " "))
	return (&providersim.Sim{JS: js, Prefix: *prefix, Providers: providers, Logger: log}).Run(ctx)
}
