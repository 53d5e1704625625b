// Package signature signs and verifies webhooks as the Standard Webhooks
// specification defines them: headers webhook-id, webhook-timestamp (unix
// seconds) and webhook-signature ("v1,<base64 HMAC-SHA256 of
// id.timestamp.body>", space-separated, one per active secret), with
// secrets written "whsec_<base64>".
//
// Providers written in Go verify takedown's deliveries with it:
//
//	v, err := signature.NewVerifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
//	if err := v.Verify(r.Header, body); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a timestamp may be from now.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp outside the tolerance")
	ErrSignature      = errors.New("webhook: no matching signature")
	ErrSecret         = errors.New("webhook: secret must be whsec_ followed by base64")
)

// Secret is a decoded signing secret.
type Secret []byte

// ParseSecret decodes "whsec_<base64>".
func ParseSecret(s string) (Secret, error) {
	raw, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, ErrSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("%w (at least 16 bytes)", ErrSecret)
	}
	return key, nil
}

// Sign returns the webhook-signature header value: one "v1,<sig>" entry per
// secret, space-separated.
func Sign(id string, ts time.Time, body []byte, secrets ...Secret) string {
	entries := make([]string, len(secrets))
	for i, s := range secrets {
		entries[i] = "v1," + base64.StdEncoding.EncodeToString(mac(s, id, ts.Unix(), body))
	}
	return strings.Join(entries, " ")
}

// SetHeaders sets the three signature headers on h.
func SetHeaders(h http.Header, id string, ts time.Time, body []byte, secrets ...Secret) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(id, ts, body, secrets...))
}

func mac(key Secret, id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verifier checks signed webhooks. Safe for concurrent use.
type Verifier struct {
	secrets   []Secret
	Tolerance time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewVerifier accepts a signature made with any of the given secrets, so
// a provider can rotate secrets without downtime.
func NewVerifier(secrets ...string) (*Verifier, error) {
	v := &Verifier{Tolerance: DefaultTolerance, Now: time.Now}
	for _, s := range secrets {
		k, err := ParseSecret(s)
		if err != nil {
			return nil, err
		}
		v.secrets = append(v.secrets, k)
	}
	if len(v.secrets) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrSecret)
	}
	return v, nil
}

// Verify checks the headers against body: the timestamp within the
// tolerance, and at least one v1 signature matching one secret (compared in
// constant time).
func (v *Verifier) Verify(h http.Header, body []byte) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not unix seconds", ErrTimestamp, tsText)
	}
	now := v.Now().Unix()
	tol := int64(v.Tolerance / time.Second)
	if ts < now-tol || ts > now+tol {
		return ErrTimestamp
	}
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		for _, s := range v.secrets {
			if hmac.Equal(got, mac(s, id, ts, body)) {
				return nil
			}
		}
	}
	return ErrSignature
}
