package signature_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/notifier/signature"
)

// The test vector published with the Standard Webhooks specification.
type vector struct {
	Secret    string `json:"secret"`
	ID        string `json:"webhook-id"`
	Timestamp string `json:"webhook-timestamp"`
	Body      string `json:"body"`
	Signature string `json:"webhook-signature"`
}

func loadVector(t *testing.T) vector {
	t.Helper()
	b, err := os.ReadFile("testdata/standard-webhooks-vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSpecificationVector(t *testing.T) {
	v := loadVector(t)
	key, err := signature.ParseSecret(v.Secret)
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
	ts := time.Unix(sec, 0)
	if got := signature.Sign(v.ID, ts, []byte(v.Body), key); got != v.Signature {
		t.Fatalf("Sign = %q, want the specification's %q", got, v.Signature)
	}
	ver, err := signature.NewVerifier(v.Secret)
	if err != nil {
		t.Fatal(err)
	}
	ver.Now = func() time.Time { return ts.Add(time.Minute) }
	h := http.Header{}
	h.Set(signature.HeaderID, v.ID)
	h.Set(signature.HeaderTimestamp, v.Timestamp)
	h.Set(signature.HeaderSignature, v.Signature)
	if err := ver.Verify(h, []byte(v.Body)); err != nil {
		t.Fatalf("Verify of the specification's vector: %v", err)
	}
	if err := ver.Verify(h, []byte(strings.Replace(v.Body, "2432", "2433", 1))); !errors.Is(err, signature.ErrSignature) {
		t.Errorf("tampered body: %v", err)
	}
	ver.Now = func() time.Time { return ts.Add(6 * time.Minute) }
	if err := ver.Verify(h, []byte(v.Body)); !errors.Is(err, signature.ErrTimestamp) {
		t.Errorf("stale timestamp: %v", err)
	}
	ver.Now = func() time.Time { return ts.Add(-6 * time.Minute) }
	if err := ver.Verify(h, []byte(v.Body)); !errors.Is(err, signature.ErrTimestamp) {
		t.Errorf("future timestamp: %v", err)
	}
}

func TestRotationSignsWithEverySecret(t *testing.T) {
	old, _ := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	next, _ := signature.ParseSecret("whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=")
	now := time.Now()
	h := http.Header{}
	body := []byte(`{"id":"n"}`)
	signature.SetHeaders(h, "n", now, body, old, next)
	if n := len(strings.Fields(h.Get(signature.HeaderSignature))); n != 2 {
		t.Fatalf("%d signatures, want one per secret", n)
	}
	for _, s := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="} {
		v, err := signature.NewVerifier(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(h, body); err != nil {
			t.Errorf("verifier holding only %s…: %v", s[:10], err)
		}
	}
	other, _ := signature.NewVerifier("whsec_b3RoZXItc2VjcmV0LW5vdC1pbi11c2U=")
	if err := other.Verify(h, body); !errors.Is(err, signature.ErrSignature) {
		t.Errorf("unrelated secret accepted: %v", err)
	}
	if err := other.Verify(http.Header{}, body); !errors.Is(err, signature.ErrMissingHeaders) {
		t.Errorf("no headers: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="} {
		if _, err := signature.ParseSecret(bad); !errors.Is(err, signature.ErrSecret) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	v := vector{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
	f.Add(v.ID, v.Timestamp, v.Signature, []byte(v.Body))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		ver, _ := signature.NewVerifier(v.Secret)
		ver.Now = func() time.Time { return time.Unix(1614265330, 0) }
		h := http.Header{}
		h.Set(signature.HeaderID, id)
		h.Set(signature.HeaderTimestamp, ts)
		h.Set(signature.HeaderSignature, sig)
		err := ver.Verify(h, body)
		if err == nil && !(id == v.ID && string(body) == v.Body && strings.Contains(sig, v.Signature[3:])) {
			t.Fatalf("accepted a forged webhook: id %q ts %q sig %q body %q", id, ts, sig, body)
		}
	})
}
