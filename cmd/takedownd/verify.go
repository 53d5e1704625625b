package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

// errDisagree is verify's finding that the tracker and the events stream
// disagree (exit status 1, after the report).
var errDisagree = errors.New("the tracker and the events stream disagree")

// verify compares the events stream with the tracker: see the usage text.
func verify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("takedownd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", "", "NATS server URL(s), comma-separated (required)")
	seed := fs.String("nats-nkey-seed-file", "", "`file` holding takedownd's NKey seed, when the server has NKey users")
	redisURL := fs.String("redis-url", "redis://127.0.0.1:6379/0", "Redis URL (redis:// or rediss://)")
	prefix := fs.String("subject-prefix", "takedown", "NATS subject prefix")
	shards := fs.Int("shards", 16, "Redis hash-tag shards, as takedownd runs with (for the outbox's length)")
	list := fs.Int("list", 20, "notices listed for each kind of disagreement")
	doRepair := fs.Bool("repair", false, "restore the notices the tracker does not hold, or holds at an older version, from their events; put the events the stream lacks back from the tracker")
	repairBatch := fs.Int("repair-batch", 20000, "notices restored per reading of the stream (bounds -repair's memory: about 5 KB a notice)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: takedownd verify -nats-url URL [-redis-url URL]

Compares the events stream (the audit log) with the tracker in Redis,
notice by notice, and reports where they disagree: notices on the stream
that the tracker does not hold or holds at an older version (transitions
lost from Redis, for instance by a crash of its host or a restore from an
older backup), and notices whose events are missing from the stream.
Without -repair it only reads: run it against the live system or a
restored one. Exit status 1 when they disagree.

With -repair it then rebuilds each notice the tracker does not hold, or
holds at an older version, from its events on the stream and writes it
back (state, deadlines, indexes, counters, body and timeline; no event
is recorded), unless the notice moved on since it was compared; and it
publishes the events the stream lacks again from the tracker's
timelines, with their ids. Run it right after Redis or the stream lost
data, before takedownd works on the notices again. Exit status 0 when
everything agrees afterwards.

Flags fall back to takedownd's environment variables
(TAKEDOWN_NATS_URL, TAKEDOWN_REDIS_URL, …).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := envFallback(fs, getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *natsURL == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: -nats-url is required, and nothing else", errUsage)
	}
	if *repairBatch < 1 {
		return fmt.Errorf("%w: -repair-batch must be positive", errUsage)
	}
	auth, err := natsAuth(config{NATSNKeySeed: *seed})
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, auth, nats.Name("takedownd verify"))
	if err != nil {
		return fmt.Errorf("nats %s: %w", *natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ropts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("%w: -redis-url: %v", errUsage, err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	store, err := tracker.New(rdb, tracker.Config{Shards: *shards, NoAutoPipeline: true})
	if err != nil {
		return err
	}
	stream := bus.StreamName(*prefix, bus.Events)
	rep, err := compareEvents(ctx, js, stream, store)
	if err != nil {
		return err
	}
	rep.print(stdout, *list)
	if rep.agree() {
		return nil
	}
	if !*doRepair {
		return errDisagree
	}
	rp, err := repair(ctx, js, stream, store, rep, *repairBatch, time.Now())
	if err == nil {
		err = republish(ctx, js, *prefix, stream, store, rep, rp)
	}
	rp.print(stdout, *list)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	if !rp.repaired() {
		return errDisagree
	}
	return nil
}

// streamNotice is what the events stream says of one notice.
type streamNotice struct {
	max    int64 // highest version
	events int64 // events (versions) seen
	// before is the highest version on the stream before the tracker
	// was read (0: the notice's events all came after).
	before int64
	first  uint64 // stream sequence of its first event
}

// eventsReport is the outcome of a comparison.
type eventsReport struct {
	stream, lastSeq uint64 // events read, up to this sequence
	notices         int    // notices on the stream
	tracked         int    // notices in the tracker
	agreeing        int
	outbox          int64 // events waiting to be relayed after the comparison
	// Disagreements, by notice id.
	missing map[string]int64        // on the stream (at this version), not tracked
	behind  map[string][2]int64     // tracker version, stream version
	ahead   map[string][2]int64     // tracker version, stream version
	gaps    map[string]streamNotice // versions missing below the highest
	// pending counts notices that changed while compared: created while
	// the tracker was read, or newer in the tracker than on the stream
	// while events wait in the outbox.
	pending int
	skipped int // events whose id is not <notice id>.<version>
	// streamFrom is the time of the stream's first message when its age
	// limit has removed events from its head, else zero; aged counts
	// notices created before it, whose early events are gone for that
	// reason.
	streamFrom time.Time
	aged       int
	// first is the stream sequence of the first event of each notice
	// not tracked or behind: where repair starts reading.
	first map[string]uint64
}

func newEventsReport() *eventsReport {
	return &eventsReport{missing: map[string]int64{}, behind: map[string][2]int64{}, ahead: map[string][2]int64{}, gaps: map[string]streamNotice{}, first: map[string]uint64{}}
}

func (r *eventsReport) agree() bool {
	return len(r.missing) == 0 && len(r.behind) == 0 && len(r.ahead) == 0 && len(r.gaps) == 0
}

// compareEvents reads the events stream up to its last message, then the
// tracker's versions and the outbox's length, then the stream's newer
// events, so that a running pipeline's progress during the comparison is
// not mistaken for a disagreement.
func compareEvents(ctx context.Context, js jetstream.JetStream, stream string, store *tracker.Store) (*eventsReport, error) {
	r := newEventsReport()
	seen := map[string]*streamNotice{}
	read := func(from uint64, beforeTracker bool) error {
		n, last, head, skipped, err := readEventIDs(ctx, js, stream, from, func(id string, v int64, seq uint64) {
			s := seen[id]
			if s == nil {
				s = &streamNotice{first: seq}
				seen[id] = s
			}
			s.max = max(s.max, v)
			s.events++
			if beforeTracker {
				s.before = max(s.before, v)
			}
		})
		r.stream += n
		r.skipped += skipped
		if beforeTracker {
			r.streamFrom = head
		}
		if last > r.lastSeq {
			r.lastSeq = last
		}
		return err
	}
	if err := read(1, true); err != nil {
		return nil, err
	}
	tracked := map[string]int64{}
	if err := store.Versions(ctx, func(id string, v int64) error { tracked[id] = v; return nil }); err != nil {
		return nil, err
	}
	// The outbox's length before the second read: when it is empty, the
	// events of every version the tracker showed are on the stream by
	// then (the relay trims an event only once the stream holds it).
	c, err := store.Counts(ctx)
	if err != nil {
		return nil, err
	}
	r.outbox = c.Outbox
	// Events the pipeline relayed while the tracker was read.
	if err := read(r.lastSeq+1, false); err != nil {
		return nil, err
	}
	r.classify(seen, tracked)
	if err := r.setAsideAged(func(ids []string) (map[string]time.Time, error) { return store.CreatedAt(ctx, ids) }); err != nil {
		return nil, err
	}
	return r, nil
}

// setAsideAged takes out of the disagreements the notices created before
// the stream's first message, when the stream's age limit has removed
// events from its head: their early events, or all of them, are gone for
// that reason, not lost.
func (r *eventsReport) setAsideAged(created func(ids []string) (map[string]time.Time, error)) error {
	if r.streamFrom.IsZero() || len(r.gaps)+len(r.ahead) == 0 {
		return nil
	}
	var ids []string
	for id := range r.gaps {
		ids = append(ids, id)
	}
	for id := range r.ahead {
		ids = append(ids, id)
	}
	at, err := created(ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if c, ok := at[id]; ok && c.Before(r.streamFrom) {
			delete(r.gaps, id)
			delete(r.ahead, id)
			r.aged++
		}
	}
	return nil
}

// classify sorts notices into agreeing and each kind of disagreement,
// given what the stream says of them (seen), the tracker's versions and
// the outbox's length. The tracker is judged against the stream as it was
// before the tracker was read; events relayed since only account for a
// tracker that had moved on.
func (r *eventsReport) classify(seen map[string]*streamNotice, tracked map[string]int64) {
	r.notices, r.tracked = len(seen), len(tracked)
	for id, s := range seen {
		v, ok := tracked[id]
		switch {
		case !ok && s.before == 0:
			r.pending++ // created while the tracker was read
		case !ok:
			r.missing[id] = s.before
			r.first[id] = s.first
		case v < s.before:
			r.behind[id] = [2]int64{v, s.before}
			r.first[id] = s.first
		case s.events < s.max:
			r.gaps[id] = *s
		case v > s.max && r.outbox > 0:
			r.pending++
		case v > s.max:
			r.ahead[id] = [2]int64{v, s.max}
		default:
			r.agreeing++
		}
	}
	for id, v := range tracked {
		if _, ok := seen[id]; !ok {
			if r.outbox > 0 {
				r.pending++
			} else {
				r.ahead[id] = [2]int64{v, 0}
			}
		}
	}
}

// readEventIDs reads the ids of the stream's events from sequence from to
// the stream's last message now (headers only), calling fn with the
// notice id, version and stream sequence of each.
func readEventIDs(ctx context.Context, js jetstream.JetStream, stream string, from uint64, fn func(id string, v int64, seq uint64)) (n, last uint64, head time.Time, skipped int, err error) {
	info, err := scanStream(ctx, js, stream, from, true, func(m jetstream.Msg, seq uint64) error {
		n++
		if id, v, ok := eventID(m.Headers().Get(jetstream.MsgIDHeader)); ok {
			fn(id, v, seq)
		} else {
			skipped++ // the pipeline's own system events
		}
		return nil
	})
	if info == nil {
		return n, 0, time.Time{}, skipped, err
	}
	// Events gone from the head of a stream whose first message is
	// nearly as old as its age limit were removed by that limit (an
	// operator's deletions or purges are not).
	if maxAge := info.Config.MaxAge; info.State.FirstSeq > 1 && maxAge > 0 && time.Since(info.State.FirstTime) > maxAge-24*time.Hour {
		head = info.State.FirstTime
	}
	return n, info.State.LastSeq, head, skipped, err
}

// scanStream calls fn with each message of stream from sequence from to
// the stream's last message when the scan starts (only their headers if
// headersOnly), and returns the stream's information as it was then (nil
// if it could not be read).
func scanStream(ctx context.Context, js jetstream.JetStream, stream string, from uint64, headersOnly bool, fn func(m jetstream.Msg, seq uint64) error) (*jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("events stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("events stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last < from {
		return info, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(from, info.State.FirstSeq), HeadersOnly: headersOnly,
	})
	if err != nil {
		return info, fmt.Errorf("events stream %s: %w", stream, err)
	}
	var n int
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return info, fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			n++
			meta, err := m.Metadata()
			if err != nil {
				return info, fmt.Errorf("read %s: %w", stream, err)
			}
			if err := fn(m, meta.Sequence.Stream); err != nil {
				return info, err
			}
			if meta.Sequence.Stream >= last {
				return info, nil
			}
		}
		if err := batch.Error(); err != nil {
			return info, fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 {
			return info, fmt.Errorf("read %s: no message after %d up to sequence %d (messages removed while reading?)", stream, n, last)
		}
	}
}

// eventID splits a notice event's message id "<notice id>.<version>".
func eventID(msgID string) (id string, v int64, ok bool) {
	id, ver, found := strings.Cut(msgID, ".")
	if !found || uuid.Validate(id) != nil {
		return "", 0, false
	}
	v, err := strconv.ParseInt(ver, 10, 64)
	if err != nil || v < 1 {
		return "", 0, false
	}
	return id, v, true
}

func (r *eventsReport) print(w io.Writer, list int) {
	fmt.Fprintf(w, "%-16s%d events (to sequence %d) of %d notices\n", "events stream:", r.stream, r.lastSeq, r.notices)
	fmt.Fprintf(w, "%-16s%d notices, %d events waiting to be relayed\n", "tracker:", r.tracked, r.outbox)
	fmt.Fprintf(w, "%-16s%d notices\n", "agreeing:", r.agreeing)
	section := func(title string, n int, lines func(emit func(string))) {
		fmt.Fprintf(w, "%-16s%d notices\n", title+":", n)
		var out []string
		lines(func(s string) { out = append(out, s) })
		slices.Sort(out)
		for i, s := range out {
			if i == list {
				fmt.Fprintf(w, "  … and %d more\n", len(out)-list)
				break
			}
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	section("not tracked", len(r.missing), func(emit func(string)) {
		for id, v := range r.missing {
			emit(fmt.Sprintf("%s: on the stream up to version %d, not in the tracker", id, v))
		}
	})
	section("tracker behind", len(r.behind), func(emit func(string)) {
		for id, vs := range r.behind {
			emit(fmt.Sprintf("%s: tracker at version %d, the stream at %d", id, vs[0], vs[1]))
		}
	})
	section("events missing", len(r.gaps)+len(r.ahead), func(emit func(string)) {
		for id, s := range r.gaps {
			emit(fmt.Sprintf("%s: %d events on the stream up to version %d", id, s.events, s.max))
		}
		for id, vs := range r.ahead {
			emit(fmt.Sprintf("%s: tracker at version %d, the stream at %d, nothing waiting to be relayed", id, vs[0], vs[1]))
		}
	})
	if r.aged > 0 {
		fmt.Fprintf(w, "%-16s%d notices created before the stream's first event (%s), whose early events its age limit removed\n", "older:", r.aged, r.streamFrom.UTC().Format(time.RFC3339))
	}
	if r.skipped > 0 {
		fmt.Fprintf(w, "(%d system events, not of a notice, not compared)\n", r.skipped)
	}
	if r.pending > 0 {
		fmt.Fprintf(w, "%-16s%d notices that changed while compared (created meanwhile, or newer in the tracker than on the stream while events wait to be relayed); run again on a quiet system to check them\n", "not compared:", r.pending)
	}
}
