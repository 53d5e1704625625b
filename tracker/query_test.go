package tracker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

func TestListPagesNewestFirstWithFilters(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	var want []string // newest first
	for i := range 37 {
		provider := "videohost"
		if i%3 == 0 {
			provider = "filedrop"
		}
		n := testenv.Notice("de-bka", fmt.Sprintf("L-%02d", i), provider, pipeline.KindRemovalOrder)
		at := t0.Add(time.Duration(i) * time.Second)
		if _, err := st.Create(ctx, &n, testenv.JSON(n), at, at); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := st.Delivered(ctx, n.ID(), at, time.Hour, at.Add(time.Hour), nil); err != nil {
				t.Fatal(err)
			}
		}
		if provider == "videohost" {
			want = append([]string{n.ID()}, want...)
		}
	}
	other := testenv.Notice("fr-pharos", "L-other", "videohost", pipeline.KindRemovalOrder)
	if _, err := st.Create(ctx, &other, testenv.JSON(other), t0, t0); err != nil {
		t.Fatal(err)
	}
	var got []string
	q := tracker.Query{Issuer: "de-bka", Provider: "videohost", Limit: 5}
	for pages := 0; ; pages++ {
		p, err := st.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Items {
			got = append(got, r.ID)
		}
		if p.NextCursor == "" {
			break
		}
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		q.Cursor = p.NextCursor
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged listing (-want +got):\n%s", diff)
	}

	// Filters: state, a time range, and scoping by provider.
	p, err := st.List(ctx, tracker.Query{Provider: "filedrop", State: pipeline.StateDelivered, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Items {
		if r.Provider != "filedrop" || r.State != pipeline.StateDelivered {
			t.Errorf("filter let through %s %s", r.Provider, r.State)
		}
	}
	if len(p.Items) != 7 { // i = 0, 6, 12, 18, 24, 30, 36
		t.Errorf("delivered filedrop notices: %d, want 7", len(p.Items))
	}
	p, _ = st.List(ctx, tracker.Query{AllIssuers: []string{"de-bka", "fr-pharos"}, From: t0.Add(10 * time.Second), To: t0.Add(20 * time.Second), Limit: 100})
	if len(p.Items) != 10 {
		t.Errorf("time range [10s, 20s): %d notices, want 10", len(p.Items))
	}
	if _, err := st.List(ctx, tracker.Query{Cursor: "%%%"}); err == nil {
		t.Error("bad cursor accepted")
	}
}

func TestTimelineAndAttempts(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	n := testenv.Notice("de-bka", "TL-1", "videohost", pipeline.KindRemovalOrder)
	if _, err := st.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
		t.Fatal(err)
	}
	att := tracker.Attempt{N: 1, At: t0, Channel: "webhook", Status: 503, Seconds: 0.2, Error: "HTTP 503"}
	if err := st.AttemptFailed(ctx, n.ID(), t0, att, t0.Add(5*time.Second), time.Time{}); err != nil {
		t.Fatal(err)
	}
	ok := tracker.Attempt{N: 2, At: t0.Add(5 * time.Second), Channel: "webhook", Status: 204, Seconds: 0.1}
	if _, err := st.Delivered(ctx, n.ID(), t0.Add(5*time.Second), time.Hour, t0.Add(time.Hour), &ok); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyFeedback(ctx, fb(n.ID(), "videohost", pipeline.FeedbackRemoved), "", t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	tl, err := st.Timeline(ctx, n.ID())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range tl {
		types = append(types, fmt.Sprintf("%d %s %s", e.Version, e.Type, e.State))
	}
	if diff := cmp.Diff([]string{"1 received received", "2 delivered delivered", "3 removed removed"}, types); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	if tl[1].Deadline == nil || !tl[1].Deadline.Equal(t0.Add(5*time.Second+time.Hour)) || tl[2].InTime == nil || !*tl[2].InTime {
		t.Errorf("timeline details: %+v %+v", tl[1], tl[2])
	}
	// The timeline holds the same events as the outbox, but for the
	// notice the received event carries (Record.Body has it).
	relayed := outboxEvents(t, st, n.ID())
	if len(relayed) != 3 || len(relayed[0].Notice) == 0 {
		t.Fatalf("outbox holds %d events of the notice, the first with notice %q", len(relayed), relayed[0].Notice)
	}
	relayed[0].Notice = nil
	if diff := cmp.Diff(relayed, tl); diff != "" {
		t.Errorf("timeline differs from the events (-outbox +timeline):\n%s", diff)
	}
	attempts, err := st.Attempts(ctx, n.ID())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]tracker.Attempt{att, ok}, attempts); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
}

// A selective filter far down the index: a page may come back short, but
// its cursor leads on until the match is found and the listing ends.
func TestListSelectiveFilterReachesTheEnd(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	ref := testenv.Notice("de-bka", "SEL-referral", "videohost", pipeline.KindReferral)
	if _, err := st.Create(ctx, &ref, testenv.JSON(ref), t0, t0); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		n := testenv.Notice("fr-pharos", fmt.Sprintf("SEL-%03d", i), "videohost", pipeline.KindRemovalOrder)
		at := t0.Add(time.Duration(i+1) * time.Second)
		if _, err := st.Create(ctx, &n, testenv.JSON(n), at, at); err != nil {
			t.Fatal(err)
		}
	}
	q := tracker.Query{AllIssuers: []string{"de-bka", "fr-pharos"}, Kind: pipeline.KindReferral, Limit: 1}
	var found []string
	for pages := 0; ; pages++ {
		p, err := st.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Items {
			found = append(found, r.ID)
		}
		if p.NextCursor == "" {
			break
		}
		if pages > 100 {
			t.Fatal("listing does not end")
		}
		q.Cursor = p.NextCursor
	}
	if len(found) != 1 || found[0] != ref.ID() {
		t.Fatalf("found %v, want the one referral", found)
	}
}
