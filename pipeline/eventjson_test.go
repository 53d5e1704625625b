package pipeline

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var trickyStrings = []string{
	"", "de-bka", "BKA-TCO-2026-000123", `"quoted" \ backslash /`, "<script>&amp;</script>",
	"line\nbreak\r\ttab\b\f", "\x00\x01\x1f\x7f", "é, 𝄞, 日本", "\u2028\u2029", "\xff\xfe invalid", "a\xc3", "\u00ad\ufeff",
}

func randomTime(r *rand.Rand) time.Time {
	zones := []*time.Location{time.UTC, time.FixedZone("", 2*3600), time.FixedZone("", -(5*3600 + 30*60)), time.FixedZone("X", 0)}
	t := time.Unix(r.Int64N(4e9), 0).In(zones[r.IntN(len(zones))])
	switch r.IntN(4) {
	case 0:
		return t.Add(time.Duration(r.IntN(1e9)))
	case 1:
		return t.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
	}
	return t
}

func randomEvent(r *rand.Rand, notice []byte) Event {
	str := func() string { return trickyStrings[r.IntN(len(trickyStrings))] }
	tp := func() *time.Time {
		if r.IntN(2) == 0 {
			return nil
		}
		t := randomTime(r)
		return &t
	}
	floats := []float64{0, 1, 1.5, -0.5, 1e-7, 1e-6, 9.99e-7, 1e21, 9.99e20, 123456.789, 3600, 0.001, 1.0 / 3}
	e := Event{
		Schema: EventSchema, ID: str(), NoticeID: str(), Version: r.Int64N(1 << 40), Type: EventType(str()), At: randomTime(r),
		State: State(str()), Issuer: str(), Provider: str(), Kind: Kind(str()), Reference: str(),
		Deadline: tp(), Overdue: r.IntN(2) == 0, DeliveredAt: tp(), Outcome: FeedbackType(str()), ActionAt: tp(),
		Ground: Ground(str()), Explanation: str(), ProviderReference: str(), Attempt: r.IntN(3) - 1,
	}
	if r.IntN(2) == 0 {
		b := r.IntN(2) == 0
		e.InTime = &b
	}
	if r.IntN(2) == 0 {
		f := floats[r.IntN(len(floats))]
		e.Seconds = &f
	}
	if r.IntN(3) == 0 {
		e.Notice = notice
	}
	return e
}

// AppendJSON writes exactly what json.Marshal writes, for events with every
// optional field present or absent, strings that need escaping, times in
// several zones and precisions, and floats in both of encoding/json's
// notations.
func TestEventAppendJSONIsJSONMarshal(t *testing.T) {
	n := Notice{Schema: NoticeSchema, Kind: KindRemovalOrder, Issuer: "de-bka", Reference: "R-<1>", Provider: "videohost",
		IssuedAt: time.Date(2026, 11, 27, 9, 15, 0, 0, time.UTC), MemberState: "DE",
		Content: []ContentItem{{URL: "https://videohost.example/v/1?a=1&b=2", Locator: "at 00:42 \u2028 <x>"}},
		Reasons: []Reason{ReasonIncitement}, Explanation: "é & <b>", Language: "de"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		e := randomEvent(r, n.JSON())
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// Every field of Event is written: a field added to Event and not to
// AppendJSON fails here, whatever the random events above set.
func TestEventAppendJSONWritesEveryField(t *testing.T) {
	var e Event
	v := reflect.ValueOf(&e).Elem()
	at := time.Date(2026, 11, 27, 9, 15, 0, 0, time.UTC)
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Type() == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(at))
		case f.Type() == reflect.TypeFor[json.RawMessage]():
			f.Set(reflect.ValueOf(json.RawMessage(`{"a":1}`)))
		case f.Kind() == reflect.Pointer:
			p := reflect.New(f.Type().Elem())
			switch p.Elem().Kind() {
			case reflect.Bool:
				p.Elem().SetBool(true)
			case reflect.Float64:
				p.Elem().SetFloat(1.5)
			default:
				p.Elem().Set(reflect.ValueOf(at))
			}
			f.Set(p)
		case f.Kind() == reflect.String:
			f.SetString("x")
		case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
			f.SetInt(2)
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		default:
			t.Fatalf("Event.%s has a type this test does not fill (%s): teach it and AppendJSON", v.Type().Field(i).Name, f.Type())
		}
	}
	want, _ := json.Marshal(e)
	if got := e.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	})
}

func BenchmarkEventJSON(b *testing.B) {
	n := Notice{Schema: NoticeSchema, Kind: KindRemovalOrder, Issuer: "de-bka", Reference: "BKA-TCO-2026-000123", Provider: "videohost",
		IssuedAt: time.Date(2026, 11, 27, 9, 15, 0, 0, time.UTC), MemberState: "DE",
		Content: []ContentItem{{URL: "https://videohost.example/v/8f3k2", Locator: "video at 00:42, uploaded by account 'x'"}},
		Reasons: []Reason{ReasonIncitement, ReasonInstruction}, Explanation: "Video glorifies the attack of ... and gives instructions for ...", Language: "de"}
	at := time.Date(2026, 11, 27, 9, 15, 0, 123456789, time.UTC)
	dl := at.Add(time.Hour)
	received := Event{Schema: EventSchema, ID: n.ID() + ".1", NoticeID: n.ID(), Version: 1, Type: EventReceived, At: at, State: StateReceived,
		Issuer: n.Issuer, Provider: n.Provider, Kind: n.Kind, Reference: n.Reference, Notice: n.JSON()}
	delivered := Event{Schema: EventSchema, ID: n.ID() + ".2", NoticeID: n.ID(), Version: 2, Type: EventDelivered, At: at, State: StateDelivered,
		Issuer: n.Issuer, Provider: n.Provider, Kind: n.Kind, Reference: n.Reference, Deadline: &dl, DeliveredAt: &at}
	for _, c := range []struct {
		name string
		e    Event
	}{{"received", received}, {"delivered", delivered}} {
		b.Run(c.name+"/json.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(c.e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/AppendJSON", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.e.AppendJSON(make([]byte, 0, 512+len(c.e.Notice))) // as the relay does
			}
		})
	}
}
