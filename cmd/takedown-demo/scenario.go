package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/report"
)

const demoWindow = 20 * time.Second

// The demo's directory: windows of seconds instead of an hour so that every
// kind of follow-up happens within a minute. The webhook provider's endpoint
// is on loopback, so it is explicitly allowed private addresses.
func demoDirectory(hookURL, secret, tokenDigest string) string {
	return fmt.Sprintf(demoDirectoryTemplate, hookURL, secret, tokenDigest)
}

const demoDirectoryTemplate = `
policies:
  removal_order:
    window: 20s
    reminders: [0.5, 0.85]
    redeliver_every: 6s
    max_deliveries: 3
    retry_delivery_every: 2s
    follow_up_every: 8s
    blocked_follow_up_every: 10s
  referral:
    window: 30s
    redeliver_every: 8s
    max_deliveries: 3
    retry_delivery_every: 2s
    follow_up_every: 10s
    blocked_follow_up_every: 10s
issuers:
  - {id: de-bka, name: Bundeskriminalamt, member_state: DE, contact: {email: tco@bka.example}}
  - {id: fr-pharos, name: PHAROS, member_state: FR, contact: {email: pharos@interieur.example}}
  - {id: eu-iru, name: Europol EU IRU, member_state: NL, contact: {email: iru@europol.example}}
providers:
  - {id: videohost, name: VideoHost Ltd, member_state: IE}
  - {id: filedrop, name: FileDrop BV, member_state: NL}
  - {id: refhub, name: RefHub SA, member_state: LU}
  - {id: lateshare, name: LateShare GmbH, member_state: DE}
  - {id: pausecast, name: PauseCast Oy, member_state: FI}
  - {id: quietboard, name: QuietBoard SRL, member_state: RO}
  - id: webcast
    name: WebCast AB
    member_state: SE
    channel: webhook
    webhook: {url: %q, allow_private: true, secrets: [%s], retry: [1s, 2s, 4s]}
    token_sha256: [%s]
`

type demoProvider struct {
	id, behaviour, flag string
	weight              int
	// silent providers never finish; the demo waits for their escalation.
	silent bool
	// webhook providers are served by providersim over HTTP.
	webhook bool
}

var demoProviders = []demoProvider{
	{id: "videohost", behaviour: "prompt", flag: "videohost=prompt:300ms", weight: 35},
	{id: "webcast", behaviour: "prompt, webhook", flag: "webcast=prompt:500ms", weight: 10, webhook: true},
	{id: "filedrop", behaviour: "slow (8s)", flag: "filedrop=slow:8s", weight: 30},
	{id: "refhub", behaviour: "declines referrals", flag: "refhub=declining:2s", weight: 15},
	{id: "lateshare", behaviour: "late (26s)", flag: "lateshare=late:26s", weight: 5},
	{id: "pausecast", behaviour: "blocks, resumes", flag: "pausecast=blocking:5s", weight: 3},
	{id: "quietboard", behaviour: "never answers", flag: "quietboard=silent", weight: 2},
}

// notice i goes to a provider by weight; every fifth is a referral.
func sample(i, total int) pipeline.Notice {
	slot := i * 100 / total
	acc, prov := 0, demoProviders[len(demoProviders)-1]
	for _, p := range demoProviders {
		acc += p.weight
		if slot < acc {
			prov = p
			break
		}
	}
	issuers := []string{"de-bka", "fr-pharos"}
	n := pipeline.Notice{
		Schema: pipeline.NoticeSchema, Kind: pipeline.KindRemovalOrder, Issuer: issuers[i%2],
		Reference: fmt.Sprintf("DEMO-%s-%05d", time.Now().UTC().Format("20060102T150405"), i),
		Provider:  prov.id, IssuedAt: time.Now().UTC().Truncate(time.Second), MemberState: "DE",
		Content: []pipeline.ContentItem{{URL: fmt.Sprintf("https://%s.example/v/%05d", prov.id, i), Locator: "video from 00:42"}},
		Reasons: []pipeline.Reason{pipeline.ReasonIncitement}, Explanation: "Glorifies a terrorist attack and calls for more.",
		Language: "de", Contact: pipeline.Contact{Name: "TCO desk", Email: "tco@bka.example"},
	}
	if n.Issuer == "fr-pharos" {
		n.MemberState, n.Language, n.Contact.Email = "FR", "fr", "pharos@interieur.example"
	}
	if i%5 == 4 && !prov.silent && prov.id != "pausecast" && prov.id != "lateshare" {
		n.Kind, n.Issuer, n.MemberState = pipeline.KindReferral, "eu-iru", "NL"
		n.Contact.Email = "iru@europol.example"
	}
	return n
}

func init() { // mark which providers never answer
	for i := range demoProviders {
		demoProviders[i].silent = strings.HasSuffix(demoProviders[i].flag, "=silent")
	}
}

type noticeStat struct {
	provider  string
	kind      pipeline.Kind
	state     pipeline.State
	delivered bool
	inTime    *bool
	seconds   float64
	escalated bool
	blocked   bool
	resumed   bool
}

type results struct {
	mu        sync.Mutex
	all       []pipeline.Event
	submitted int
	notices   map[string]*noticeStat
	events    map[pipeline.EventType]int
	start     time.Time
}

func (r *results) apply(e pipeline.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, e)
	r.events[e.Type]++
	n, ok := r.notices[e.NoticeID]
	if !ok {
		n = &noticeStat{provider: e.Provider, kind: e.Kind}
		r.notices[e.NoticeID] = n
	}
	n.state = e.State
	switch e.Type {
	case pipeline.EventDelivered:
		n.delivered = true
	case pipeline.EventRemoved:
		n.inTime = e.InTime
		if e.Seconds != nil {
			n.seconds = *e.Seconds
		}
	case pipeline.EventEscalated:
		n.escalated = true
	case pipeline.EventBlocked:
		n.blocked = true
	case pipeline.EventResumed:
		n.resumed = true
	}
}

// finished: every answering provider's notices are terminal and every
// silent provider's notices are escalated.
func (r *results) finished(total int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.submitted < total || len(r.notices) < total {
		return false
	}
	silent := map[string]bool{}
	for _, p := range demoProviders {
		silent[p.id] = p.silent
	}
	for _, n := range r.notices {
		if silent[n.provider] && !n.escalated {
			return false
		}
		if !silent[n.provider] && !n.state.Terminal() {
			return false
		}
	}
	return true
}

func (r *results) progress() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var delivered, inTime, late, declined, open, overdue, blocked int
	for _, n := range r.notices {
		if n.delivered {
			delivered++
		}
		switch {
		case n.state == pipeline.StateRemoved && n.inTime != nil && *n.inTime:
			inTime++
		case n.state == pipeline.StateRemoved:
			late++
		case n.state == pipeline.StateDeclined:
			declined++
		case !n.state.Terminal():
			open++
			if n.escalated {
				overdue++
			}
			if n.state == pipeline.StateBlocked {
				blocked++
			}
		}
	}
	return fmt.Sprintf("%3ds  submitted %d  delivered %d  removed %d (late %d)  declined %d  open %d (blocked %d, overdue %d)  reminders %d  escalations %d",
		int(time.Since(r.start).Seconds()), r.submitted, delivered, inTime+late, late, declined, open, blocked, overdue,
		r.events[pipeline.EventReminder], r.events[pipeline.EventEscalated])
}

// missing lists what the demo is meant to show but did not.
func (r *results) missing() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	if r.events[pipeline.EventRemoved] == 0 {
		out = append(out, "removals")
	}
	if r.events[pipeline.EventReminder] == 0 {
		out = append(out, "reminders")
	}
	if r.events[pipeline.EventEscalated] == 0 {
		out = append(out, "an escalation")
	}
	resumedAndRemoved := false
	for _, n := range r.notices {
		resumedAndRemoved = resumedAndRemoved || (n.blocked && n.resumed && n.state == pipeline.StateRemoved)
	}
	if !resumedAndRemoved {
		out = append(out, "a blocked-then-resumed order removed")
	}
	return out
}

func drive(ctx context.Context, natsURL string, o options, stdout io.Writer) (*results, error) {
	nc, err := nats.Connect(natsURL, nats.Name("takedown-demo"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	res := &results{notices: map[string]*noticeStat{}, events: map[pipeline.EventType]int{}, start: time.Now()}
	cons, err := js.OrderedConsumer(ctx, "TAKEDOWN_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"takedown.events.>"}})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e pipeline.Event
		if json.Unmarshal(m.Data(), &e) == nil {
			res.apply(e)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	defer cc.Stop()

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	go func() {
		gap := time.Duration(float64(time.Second) / o.rate)
		for i := range o.notices {
			n := sample(i, o.notices)
			data, _ := json.Marshal(n)
			msg := nats.NewMsg("takedown.intake." + n.Issuer)
			msg.Data = data
			if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(n.ID())); err != nil {
				return
			}
			res.mu.Lock()
			res.submitted++
			res.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(gap):
			}
		}
	}()

	tty := isTerminal(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, printed := time.Now(), ""
	for !res.finished(o.notices) {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout)
			if ctx.Err() == context.DeadlineExceeded {
				return res, fmt.Errorf("not finished after %s: %s", o.timeout, res.progress())
			}
			return res, ctx.Err()
		case <-tick.C:
		}
		if tty {
			fmt.Fprintf(stdout, "\r%s\033[K", res.progress())
		} else if time.Since(last) >= 5*time.Second {
			printed = res.progress()
			fmt.Fprintln(stdout, printed)
			last = time.Now()
		}
	}
	if tty {
		fmt.Fprintf(stdout, "\r%s\033[K\n", res.progress())
	} else if line := res.progress(); line != printed {
		fmt.Fprintln(stdout, line)
	}
	return res, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func summarize(w io.Writer, r *results) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "provider\tbehaviour\tnotices\tdelivered\tremoved in time\tlate\tdeclined\topen\tmedian time to removal\t")
	for _, p := range demoProviders {
		var notices, delivered, inTime, late, declined, open int
		var secs []float64
		for _, n := range r.notices {
			if n.provider != p.id {
				continue
			}
			notices++
			if n.delivered {
				delivered++
			}
			switch {
			case n.state == pipeline.StateRemoved:
				secs = append(secs, n.seconds)
				if n.inTime != nil && *n.inTime {
					inTime++
				} else {
					late++
				}
			case n.state == pipeline.StateDeclined:
				declined++
			case !n.state.Terminal():
				open++
			}
		}
		median := "-"
		if len(secs) > 0 {
			sort.Float64s(secs)
			median = fmt.Sprintf("%.1fs", secs[len(secs)/2])
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.id, p.behaviour, notices, delivered, inTime, late, declined, open, median)
	}
	tw.Flush()
	types := make([]string, 0, len(r.events))
	for t := range r.events {
		types = append(types, string(t))
	}
	slices.Sort(types)
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", t, r.events[pipeline.EventType(t)])
	}
	fmt.Fprintf(w, "\nevents on TAKEDOWN_EVENTS: %s\n\n", strings.Join(parts, ", "))
	// The transparency report of the demo's own notices, from the same
	// events (what takedownctl report prints), over the demo's own run:
	// whole seconds from its start up to now, which hold every event.
	_ = report.Build(r.all, r.start.Truncate(time.Second), time.Now().Truncate(time.Second).Add(time.Second)).Markdown(w)
}
