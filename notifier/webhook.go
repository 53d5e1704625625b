package notifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/takedown-eu/takedown/notifier/signature"
	"github.com/takedown-eu/takedown/pipeline"
)

// EndpointGate reports whether a provider's webhook endpoint is disabled.
type EndpointGate func(ctx context.Context, provider string) (bool, error)

// Webhook delivers notices as signed HTTP POSTs (Standard Webhooks). A 2xx
// answer is receipt. It makes one attempt per call; retries, concurrency,
// rate limits and the circuit breaker live in Lanes.
type Webhook struct {
	dir     *pipeline.Directory
	clock   pipeline.Clock
	gate    EndpointGate
	clients map[string]*http.Client
	secrets map[string][]signature.Secret
}

var _ Channel = (*Webhook)(nil)

// WebhookOption adjusts a Webhook.
type WebhookOption func(*webhookOpts)

type webhookOpts struct{ resolve Resolver }

// WithResolver replaces DNS resolution (tests use a stub).
func WithResolver(r Resolver) WebhookOption { return func(o *webhookOpts) { o.resolve = r } }

// NewWebhook builds one HTTP client per webhook provider of the directory:
// its own timeout, no redirects, and a dialer that refuses non-public
// addresses unless the provider allows them. gate may be nil.
func NewWebhook(dir *pipeline.Directory, clock pipeline.Clock, gate EndpointGate, opts ...WebhookOption) (*Webhook, error) {
	var o webhookOpts
	for _, f := range opts {
		f(&o)
	}
	w := &Webhook{dir: dir, clock: clock, gate: gate, clients: map[string]*http.Client{}, secrets: map[string][]signature.Secret{}}
	for _, p := range dir.Providers {
		if p.Channel != pipeline.ChannelWebhook {
			continue
		}
		for _, s := range p.Webhook.Secrets {
			k, err := signature.ParseSecret(s)
			if err != nil {
				return nil, fmt.Errorf("provider %s: %w", p.ID, err)
			}
			w.secrets[p.ID] = append(w.secrets[p.ID], k)
		}
		d := &SafeDialer{AllowPrivate: p.Webhook.AllowPrivate, Resolve: o.resolve, Timeout: p.Webhook.Timeout.D()}
		w.clients[p.ID] = &http.Client{
			Timeout: p.Webhook.Timeout.D(),
			Transport: &http.Transport{
				DialContext: d.DialContext, MaxIdleConnsPerHost: p.Webhook.Concurrency, IdleConnTimeout: 90 * time.Second,
				TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: p.Webhook.Timeout.D(), ForceAttemptHTTP2: true,
			},
			// A redirect is not followed: it is answered as a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return w, nil
}

// Deliver makes one signed POST of the notice to the provider's endpoint.
func (w *Webhook) Deliver(ctx context.Context, d Delivery) (Receipt, error) {
	p, ok := w.dir.Provider(d.Provider)
	client := w.clients[d.Provider]
	if !ok || client == nil {
		return Receipt{}, &AttemptError{Permanent: true, Err: fmt.Errorf("provider %q has no webhook: %w", d.Provider, ErrNoChannel)}
	}
	if w.gate != nil {
		disabled, err := w.gate(ctx, d.Provider)
		if err != nil {
			return Receipt{}, &AttemptError{Err: fmt.Errorf("endpoint state: %w", err)}
		}
		if disabled {
			return Receipt{}, &AttemptError{Permanent: true, Err: ErrEndpointDisabled}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Webhook.URL, bytes.NewReader(d.Body))
	if err != nil {
		return Receipt{}, &AttemptError{Permanent: true, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "takedown-webhook/1")
	req.Header.Set(HeaderNoticeID, d.NoticeID)
	req.Header.Set(HeaderKind, string(d.Kind))
	req.Header.Set(HeaderAttempt, strconv.Itoa(max(d.Attempt, 1)))
	// webhook-id is the notice id on every attempt; the timestamp is fresh.
	signature.SetHeaders(req.Header, d.NoticeID, w.clock.Now(), d.Body, w.secrets[d.Provider]...)
	start := time.Now()
	resp, err := client.Do(req)
	latency := time.Since(start)
	if err != nil {
		return Receipt{Latency: latency}, &AttemptError{Permanent: errors.Is(err, ErrForbiddenAddress), Err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	rec := Receipt{At: w.clock.Now(), Status: resp.StatusCode, Latency: latency}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return rec, nil
	case code == http.StatusGone:
		return rec, &AttemptError{Status: code, Permanent: true, Gone: true, Err: errors.New("endpoint gone")}
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return rec, &AttemptError{Status: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), w.clock.Now()), Err: errors.New(http.StatusText(code))}
	case code >= 300 && code < 400:
		return rec, &AttemptError{Status: code, Permanent: true, Err: fmt.Errorf("redirect to %q not followed", resp.Header.Get("Location"))}
	default:
		return rec, &AttemptError{Status: code, Permanent: true, Err: errors.New(http.StatusText(code))}
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. It caps
// the delay at an hour, the length of a removal order's window.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}
