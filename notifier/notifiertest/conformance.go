// Package notifiertest is the conformance suite every delivery channel
// must pass. A channel's test supplies a factory that builds the channel
// and a way to read what the provider received.
//
//	notifiertest.Run(t, func(t *testing.T) notifiertest.Harness { ... })
package notifiertest

import (
	"context"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
)

// Received is one delivery as the provider saw it.
type Received struct {
	NoticeID string
	Body     []byte
}

// Harness is a channel under test and the provider side of it.
type Harness struct {
	Channel notifier.Channel
	// Provider the channel delivers to.
	Provider string
	// Received returns, in order, every delivery the provider has had.
	Received func(t *testing.T) []Received
	// Now is the clock the channel stamps receipts with.
	Now func() time.Time
}

// Run runs the suite; newHarness builds a fresh channel per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("DeliversBodyAndReportsReceipt", func(t *testing.T) {
		h := newHarness(t)
		body := []byte(`{"id":"n1","kind":"removal_order"}`)
		id := pipeline.NoticeID("de-bka", "conformance-1")
		before := h.Now()
		r, err := h.Channel.Deliver(context.Background(), notifier.Delivery{NoticeID: id, Provider: h.Provider, Kind: pipeline.KindRemovalOrder, Body: body, Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.At.Before(before) || r.At.After(h.Now()) {
			t.Errorf("receipt %v outside the delivery call [%v, %v]", r.At, before, h.Now())
		}
		got := h.Received(t)
		if len(got) != 1 || got[0].NoticeID != id || string(got[0].Body) != string(body) {
			t.Fatalf("provider received %+v", got)
		}
	})
	t.Run("RetriedFirstDeliveryIsDeduplicated", func(t *testing.T) {
		h := newHarness(t)
		id := pipeline.NoticeID("de-bka", "conformance-2")
		d := notifier.Delivery{NoticeID: id, Provider: h.Provider, Kind: pipeline.KindRemovalOrder, Body: []byte(`{}`), Attempt: 1}
		for range 3 {
			if _, err := h.Channel.Deliver(context.Background(), d); err != nil {
				t.Fatal(err)
			}
		}
		if got := h.Received(t); len(got) > 1 {
			// Channels that cannot deduplicate must still deliver the same
			// notice id each time, so the provider can.
			for _, r := range got {
				if r.NoticeID != id {
					t.Fatalf("retry carried notice id %q", r.NoticeID)
				}
			}
		}
	})
	t.Run("RedeliveryReachesTheProviderAgain", func(t *testing.T) {
		h := newHarness(t)
		id := pipeline.NoticeID("de-bka", "conformance-3")
		for attempt := 1; attempt <= 2; attempt++ {
			d := notifier.Delivery{NoticeID: id, Provider: h.Provider, Kind: pipeline.KindReferral, Body: []byte(`{}`), Attempt: attempt}
			if _, err := h.Channel.Deliver(context.Background(), d); err != nil {
				t.Fatal(err)
			}
		}
		if got := h.Received(t); len(got) != 2 {
			t.Fatalf("provider received %d deliveries, want the first and the redelivery", len(got))
		}
	})
	t.Run("FailureIsAnError", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := h.Channel.Deliver(ctx, notifier.Delivery{NoticeID: pipeline.NoticeID("de-bka", "c4"), Provider: h.Provider, Body: []byte(`{}`), Attempt: 1})
		if err == nil {
			t.Fatal("delivery with a cancelled context reported success")
		}
	})
}
