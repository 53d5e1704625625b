package signature_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/notifier/signature"
)

func BenchmarkSign(b *testing.B) {
	key, _ := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := make([]byte, 700)
	ts := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = signature.Sign("6f1c3f0e-3b7a-5d8e-9a51-7c2a1e0b9d44", ts, body, key)
	}
}

func BenchmarkVerify(b *testing.B) {
	key, _ := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	v, _ := signature.NewVerifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := make([]byte, 700)
	h := http.Header{}
	signature.SetHeaders(h, "6f1c3f0e-3b7a-5d8e-9a51-7c2a1e0b9d44", time.Now(), body, key)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(h, body); err != nil {
			b.Fatal(err)
		}
	}
}
