package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

// crashBeforeTrim is the real store, except that the relay dies between
// publishing and trimming.
type crashBeforeTrim struct{ *tracker.Store }

func (crashBeforeTrim) TrimOutboxes(context.Context, map[int][]string) error {
	return errors.New("killed before trim")
}

func TestRelayKilledBeforeTrimPublishesEachEventOnceInOrder(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	id := ""
	for i, ref := range []string{"R-1", "R-2", "R-3"} {
		n := testenv.Notice("de-bka", ref, "videohost", pipeline.KindRemovalOrder)
		if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := h.store.Delivered(ctx, n.ID(), t0, time.Hour, t0.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			id = n.ID()
			if _, err := h.store.ApplyFeedback(ctx, simple(id, "videohost", pipeline.FeedbackAcknowledged), "", t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	dying := &worker.Relay{Store: crashBeforeTrim{h.store}, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "dying", LeaseTTL: time.Second}
	if _, err := dying.RunOnce(ctx); err == nil {
		t.Fatal("trim failure not reported")
	}
	c, _ := h.store.Counts(ctx)
	if c.Outbox != 7 {
		t.Fatalf("outbox holds %d events after the crash, want all 7 kept", c.Outbox)
	}
	// The next relay takes the shard over once the lease lapses and
	// publishes everything again; JetStream drops the duplicates.
	next := &worker.Relay{Store: h.store, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "next"}
	testenv.WaitFor(t, 10*time.Second, "outbox relayed by the next relay", func() bool {
		if _, err := next.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		c, _ := h.store.Counts(ctx)
		return c.Outbox == 0
	})
	all := h.streamMsgs("EVENTS", "takedown.events.>")
	if len(all) != 7 {
		t.Fatalf("events stream holds %d events, want 7 (no duplicates)", len(all))
	}
	var versions []int64
	for _, e := range h.events(id) {
		versions = append(versions, e.Version)
	}
	if diff := cmp.Diff([]int64{1, 2, 3}, versions); diff != "" {
		t.Errorf("versions in stream order (-want +got):\n%s", diff)
	}
}
