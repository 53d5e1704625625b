// Command providersim runs simulated hosting providers against a takedown
// pipeline's NATS server: each reads its deliver subject with its own
// durable consumer and answers on its feedback subject.
//
//	providersim -nats-url nats://127.0.0.1:4222 \
//	    -provider videohost=prompt -provider filedrop=slow:20s -provider quiet=silent
//
// Webhook providers receive signed POSTs on http://<listen>/hooks/<id> and
// answer over takedownd's HTTP API:
//
//	providersim -nats-url … -webhook-listen 127.0.0.1:9090 -webhook-secret whsec_… \
//	    -api-url http://127.0.0.1:8080 -webhook-provider webcast=prompt -api-token webcast=TOKEN
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	var providers, hooks providerFlags
	fs.Var(&providers, "provider", "a simulated NATS provider as id=behaviour[:delay]; repeat for more.\nbehaviours: prompt, slow, late, blocking, declining, silent")
	fs.Var(&hooks, "webhook-provider", "a simulated webhook provider as id=behaviour[:delay]; repeat for more")
	listen := fs.String("webhook-listen", "127.0.0.1:9090", "address the webhook providers listen on")
	var secrets stringList
	fs.Var(&secrets, "webhook-secret", "whsec_ secret that webhook signatures must match; repeat for rotation")
	apiURL := fs.String("api-url", "http://127.0.0.1:8080", "takedownd HTTP API, for webhook providers' feedback")
	tokens := tokenFlags{}
	fs.Var(tokens, "api-token", "a webhook provider's API bearer token as id=token; repeat for more")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: providersim -nats-url URL -provider id=behaviour[:delay] ...\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *natsURL == "" || len(providers)+len(hooks) == 0 {
		fs.Usage()
		return errors.New("need -nats-url and at least one -provider or -webhook-provider")
	}
	var webhook *providersim.WebhookConfig
	if len(hooks) > 0 {
		if len(secrets) == 0 {
			return errors.New("webhook providers need -webhook-secret")
		}
		for _, p := range hooks {
			if tokens[p.ID] == "" {
				return fmt.Errorf("webhook provider %s needs -api-token %s=TOKEN", p.ID, p.ID)
			}
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		webhook = &providersim.WebhookConfig{Providers: hooks, Listener: ln, Secrets: secrets, APIURL: strings.TrimRight(*apiURL, "/"), Tokens: tokens}
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
	var names []string
	for _, p := range providers {
		names = append(names, fmt.Sprintf("%s=%s", p.ID, p.Behaviour))
	}
	for _, p := range hooks {
		names = append(names, fmt.Sprintf("%s=%s(webhook http://%s/hooks/%s)", p.ID, p.Behaviour, webhook.Listener.Addr(), p.ID))
	}
	log.Info("simulating providers", "providers", strings.Join(names, " "))
	return (&providersim.Sim{JS: js, Prefix: *prefix, Providers: providers, Webhook: webhook, Logger: log}).Run(ctx)
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

type tokenFlags map[string]string

func (t tokenFlags) String() string { return fmt.Sprint(len(t), " tokens") }
func (t tokenFlags) Set(s string) error {
	id, tok, ok := strings.Cut(s, "=")
	if !ok || id == "" || tok == "" {
		return fmt.Errorf("%q: want id=token", s)
	}
	t[id] = tok
	return nil
}
