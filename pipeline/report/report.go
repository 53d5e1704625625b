// Package report computes the transparency figures that TCO Art. 7 and 8
// ask authorities and providers to publish, per issuer and per provider,
// from the audit log of events (TAKEDOWN_EVENTS), never from metrics.
//
//	r := report.Build(events, from, to)
//	r.Markdown(os.Stdout)
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
)

// Figures are the counts for one issuer, one provider, or everything.
type Figures struct {
	OrdersReceived     int `json:"orders_received"`
	ReferralsReceived  int `json:"referrals_received"`
	OrdersDelivered    int `json:"orders_delivered"`
	ReferralsDelivered int `json:"referrals_delivered"`
	// OrdersRemovedInTime and OrdersRemovedLate split the removal orders
	// acted on by their deadline (one hour from receipt, restarted after a
	// block is lifted).
	OrdersRemovedInTime int `json:"orders_removed_in_time"`
	OrdersRemovedLate   int `json:"orders_removed_late"`
	ReferralsRemoved    int `json:"referrals_removed"`
	// Blocked counts Annex III blocks by ground.
	BlockedForceMajeure     int `json:"blocked_force_majeure"`
	BlockedManifestError    int `json:"blocked_manifest_error"`
	BlockedInsufficientInfo int `json:"blocked_insufficient_info"`
	Declined                int `json:"declined"`
	Withdrawn               int `json:"withdrawn"`
	// MedianSeconds and P90Seconds are the time from delivery to removal
	// of removal orders (nearest rank); nil when none was removed.
	MedianSeconds *float64 `json:"median_seconds"`
	P90Seconds    *float64 `json:"p90_seconds"`

	seconds []float64
}

// Row is the figures of one issuer or provider.
type Row struct {
	Name string `json:"name"`
	Figures
}

// Report is the transparency report of a period.
type Report struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Total     Figures   `json:"total"`
	Issuers   []Row     `json:"issuers"`
	Providers []Row     `json:"providers"`
}

// Build counts the events whose time falls in [from, to). Events may come
// in any order and more than once (at-least-once delivery): each event id
// counts once.
func Build(events []pipeline.Event, from, to time.Time) Report {
	r := Report{From: from.UTC(), To: to.UTC()}
	issuers, providers := map[string]*Figures{}, map[string]*Figures{}
	seen := map[string]bool{}
	get := func(m map[string]*Figures, k string) *Figures {
		if m[k] == nil {
			m[k] = &Figures{}
		}
		return m[k]
	}
	for _, e := range events {
		if e.NoticeID == "" || seen[e.ID] || e.At.Before(from) || !e.At.Before(to) {
			continue
		}
		seen[e.ID] = true
		for _, f := range []*Figures{&r.Total, get(issuers, e.Issuer), get(providers, e.Provider)} {
			f.add(e)
		}
	}
	r.Total.finish()
	r.Issuers, r.Providers = rows(issuers), rows(providers)
	return r
}

func (f *Figures) add(e pipeline.Event) {
	order := e.Kind == pipeline.KindRemovalOrder
	switch e.Type {
	case pipeline.EventReceived:
		if order {
			f.OrdersReceived++
		} else {
			f.ReferralsReceived++
		}
	case pipeline.EventDelivered:
		if order {
			f.OrdersDelivered++
		} else {
			f.ReferralsDelivered++
		}
	case pipeline.EventRemoved:
		switch {
		case !order:
			f.ReferralsRemoved++
		case e.InTime != nil && *e.InTime:
			f.OrdersRemovedInTime++
		default:
			f.OrdersRemovedLate++
		}
		if order && e.Seconds != nil {
			f.seconds = append(f.seconds, *e.Seconds)
		}
	case pipeline.EventBlocked:
		switch e.Ground {
		case pipeline.GroundForceMajeure:
			f.BlockedForceMajeure++
		case pipeline.GroundManifestError:
			f.BlockedManifestError++
		case pipeline.GroundInsufficientInfo:
			f.BlockedInsufficientInfo++
		}
	case pipeline.EventDeclined:
		f.Declined++
	case pipeline.EventWithdrawn:
		f.Withdrawn++
	}
}

func (f *Figures) finish() {
	if len(f.seconds) == 0 {
		return
	}
	slices.Sort(f.seconds)
	f.MedianSeconds = ptr(rank(f.seconds, 0.5))
	f.P90Seconds = ptr(rank(f.seconds, 0.9))
}

// rank is the nearest-rank percentile of sorted values.
func rank(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func ptr(v float64) *float64 { return &v }

func rows(m map[string]*Figures) []Row {
	out := make([]Row, 0, len(m))
	for name, f := range m {
		f.finish()
		out = append(out, Row{Name: name, Figures: *f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// columns are the figures in report order, with their headings.
var columns = []struct {
	head string
	get  func(Figures) string
}{
	{"orders received", func(f Figures) string { return strconv.Itoa(f.OrdersReceived) }},
	{"orders delivered", func(f Figures) string { return strconv.Itoa(f.OrdersDelivered) }},
	{"removed in time", func(f Figures) string { return strconv.Itoa(f.OrdersRemovedInTime) }},
	{"removed late", func(f Figures) string { return strconv.Itoa(f.OrdersRemovedLate) }},
	{"referrals received", func(f Figures) string { return strconv.Itoa(f.ReferralsReceived) }},
	{"referrals delivered", func(f Figures) string { return strconv.Itoa(f.ReferralsDelivered) }},
	{"referrals removed", func(f Figures) string { return strconv.Itoa(f.ReferralsRemoved) }},
	{"declined", func(f Figures) string { return strconv.Itoa(f.Declined) }},
	{"withdrawn", func(f Figures) string { return strconv.Itoa(f.Withdrawn) }},
	{"blocked: force majeure", func(f Figures) string { return strconv.Itoa(f.BlockedForceMajeure) }},
	{"blocked: manifest error", func(f Figures) string { return strconv.Itoa(f.BlockedManifestError) }},
	{"blocked: insufficient info", func(f Figures) string { return strconv.Itoa(f.BlockedInsufficientInfo) }},
	{"median time to removal (s)", func(f Figures) string { return secs(f.MedianSeconds) }},
	{"p90 time to removal (s)", func(f Figures) string { return secs(f.P90Seconds) }},
}

func secs(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}

// Markdown writes the report as Markdown tables.
func (r Report) Markdown(w io.Writer) error {
	var err error
	p := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, args...)
		}
	}
	p("# Transparency report\n\nPeriod: %s to %s (UTC). Counted from the events audit log.\n", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	table := func(title, first string, rows []Row) {
		p("\n## %s\n\n| %s |", title, first)
		for _, c := range columns {
			p(" %s |", c.head)
		}
		p("\n|---|")
		for range columns {
			p("---:|")
		}
		p("\n")
		for _, row := range rows {
			p("| %s |", row.Name)
			for _, c := range columns {
				p(" %s |", c.get(row.Figures))
			}
			p("\n")
		}
	}
	table("All notices", "scope", []Row{{Name: "total", Figures: r.Total}})
	table("Per issuer", "issuer", r.Issuers)
	table("Per provider", "provider", r.Providers)
	return err
}

// CSV writes one line per scope: total, each issuer, each provider.
func (r Report) CSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := []string{"scope", "name"}
	for _, c := range columns {
		head = append(head, c.head)
	}
	_ = cw.Write(head)
	line := func(scope string, row Row) {
		rec := []string{scope, row.Name}
		for _, c := range columns {
			rec = append(rec, c.get(row.Figures))
		}
		_ = cw.Write(rec)
	}
	line("total", Row{Name: "all", Figures: r.Total})
	for _, row := range r.Issuers {
		line("issuer", row)
	}
	for _, row := range r.Providers {
		line("provider", row)
	}
	cw.Flush()
	return cw.Error()
}

// JSON writes the report as indented JSON.
func (r Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
