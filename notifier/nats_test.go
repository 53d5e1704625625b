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
