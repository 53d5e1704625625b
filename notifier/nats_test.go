package notifier_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/notifier/notifiertest"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

func TestNATSChannelConformance(t *testing.T) {
	notifiertest.Run(t, func(t *testing.T) notifiertest.Harness {
		_, _, js := testenv.NATS(t)
		b, err := bus.New(context.Background(), js, bus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		clock := pipeline.SystemClock{}
		return notifiertest.Harness{
			Channel:  notifier.NewNATS(b, clock),
			Provider: "videohost",
			Now:      func() time.Time { return clock.Now() },
			Received: func(t *testing.T) []notifiertest.Received {
				ctx := context.Background()
				s, err := js.Stream(ctx, b.StreamName(bus.Deliver))
				if err != nil {
					t.Fatal(err)
				}
				info, _ := s.Info(ctx)
				var out []notifiertest.Received
				for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
					m, err := s.GetMsg(ctx, seq)
					if err != nil {
						t.Fatal(err)
					}
					if m.Subject != "takedown.deliver.videohost" {
						t.Errorf("delivered on %s", m.Subject)
					}
					out = append(out, notifiertest.Received{NoticeID: m.Header.Get(notifier.HeaderNoticeID), Body: m.Data})
				}
				return out
			},
		}
	})
}

func TestNotifierRoutesByDirectory(t *testing.T) {
	dir, err := pipeline.ParseDirectory([]byte("issuers: [{id: a, name: A, member_state: DE}]\nproviders: [{id: p, name: P}]\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := notifier.New(dir, map[pipeline.Channel]notifier.Channel{})
	_, err = n.Deliver(context.Background(), notifier.Delivery{NoticeID: "x", Provider: "p"})
	if !errors.Is(err, notifier.ErrNoChannel) {
		t.Errorf("missing channel: %v", err)
	}
	_, err = n.Deliver(context.Background(), notifier.Delivery{NoticeID: "x", Provider: "nobody"})
	if !errors.Is(err, pipeline.ErrUnknownPrincipal) {
		t.Errorf("unknown provider: %v", err)
	}
	if got := notifier.DeliverMsgID("id", 1); got != "id" {
		t.Errorf("first delivery msg id %q", got)
	}
	if got := notifier.DeliverMsgID("id", 3); got != "id.d3" {
		t.Errorf("redelivery msg id %q", got)
	}
}

// An attempt published again (the pipeline stopped after JetStream stored
// it and before the delivery was recorded) is not stored twice, and its
// receipt is the first storing: that is when the provider could read it,
// and the legal clock starts there, not at the repeat.
func TestNATSRepeatedAttemptKeepsFirstReceipt(t *testing.T) {
	_, _, js := testenv.NATS(t)
	ctx := context.Background()
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clock := testenv.NewClock(time.Now())
	ch := notifier.NewNATS(b, clock)
	d := notifier.Delivery{NoticeID: pipeline.NoticeID("de-bka", "R-1"), Provider: "videohost", Kind: pipeline.KindRemovalOrder, Attempt: 1, Body: []byte(`{}`)}
	first, err := ch.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(40 * time.Second) // the restart and the repeat
	again, err := ch.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, b.StreamName(bus.Deliver))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("deliver stream holds %d messages, want the attempt once", info.State.Msgs)
	}
	if !again.At.Equal(stored.Time) {
		t.Errorf("repeated attempt's receipt %s, want the first storing %s (the first attempt's receipt: %s)", again.At, stored.Time, first.At)
	}
	// A new attempt is a new message, received now.
	d.Attempt = 2
	third, err := ch.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !third.At.Equal(clock.Now()) {
		t.Errorf("second attempt's receipt %s, want now %s", third.At, clock.Now())
	}
}
