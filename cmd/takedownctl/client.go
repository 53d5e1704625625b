package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// client speaks to the takedown API.
type client struct {
	base, token string
	timeout     time.Duration
	http        *http.Client
}

func newClient(base, token string, timeout time.Duration) *client {
	return &client{base: base, token: token, timeout: timeout, http: &http.Client{}}
}

// apiError is an error answer from the server.
type apiError struct {
	status int
	// retryAfter is the server's Retry-After (0 when it sent none).
	retryAfter time.Duration
	Title      string `json:"title"`
	Detail     string `json:"detail"`
	Errors     []struct {
		Field   string `json:"field"`
		Problem string `json:"problem"`
	} `json:"errors"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Problem)
	}
	return b.String()
}

func (c *client) request(ctx context.Context, method, path string, body []byte, header map[string]string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		ae := &apiError{status: resp.StatusCode, Title: resp.Status}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(raw, ae)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			ae.Detail = strings.TrimSpace(ae.Detail + " (retry after " + ra + "s)")
			if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
				ae.retryAfter = max(time.Duration(secs)*time.Second, 100*time.Millisecond)
			}
		}
		return nil, ae
	}
	return resp, nil
}

// do sends a request and decodes a JSON answer into out (may be nil). It
// returns the HTTP status.
func (c *client) do(ctx context.Context, method, path string, in any, out any, header map[string]string) (int, error) {
	var body []byte
	switch v := in.(type) {
	case nil:
	case []byte:
		body = v
	default:
		var err error
		if body, err = json.Marshal(v); err != nil {
			return 0, err
		}
	}
	for retries := 0; ; retries++ {
		status, err := c.once(ctx, method, path, body, out, header)
		var ae *apiError
		if !errors.As(err, &ae) || ae.retryAfter == 0 || retries == maxRetries ||
			(ae.status != http.StatusTooManyRequests && ae.status != http.StatusServiceUnavailable) {
			return status, err
		}
		// Rate limited, or the server cannot take it right now: wait as
		// long as it asks and send the same request again (every request
		// of the API may be repeated: submissions and answers are
		// idempotent).
		select {
		case <-ctx.Done():
			return status, err
		case <-time.After(min(ae.retryAfter, maxRetryWait)):
		}
	}
}

// maxRetries bounds how often one request is sent again after a 429 or a
// 503 with Retry-After, and maxRetryWait each wait.
const (
	maxRetries   = 10
	maxRetryWait = 30 * time.Second
)

// once sends a request once, within the client's timeout.
func (c *client) once(ctx context.Context, method, path string, body []byte, out any, header map[string]string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.request(ctx, method, path, body, header)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("unreadable answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// stream reads a Server-Sent Events answer and calls fn per event.
func (c *client) stream(ctx context.Context, path string, fn func(typ string, data []byte)) error {
	resp, err := c.request(ctx, http.MethodGet, path, nil, map[string]string{"Accept": "text/event-stream"})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var typ string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			fn(typ, []byte(strings.TrimPrefix(line, "data: ")))
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
