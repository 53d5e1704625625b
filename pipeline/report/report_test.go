package report_test

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/report"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type history struct{ events []pipeline.Event }

// notice appends a notice's events; steps are "type[:detail]@minutes".
func (h *history) notice(issuer, provider string, kind pipeline.Kind, ref string, steps ...string) {
	id := pipeline.NoticeID(issuer, ref)
	for i, s := range steps {
		typ, at, _ := strings.Cut(s, "@")
		typ, detail, _ := strings.Cut(typ, ":")
		min, _ := time.ParseDuration(at + "m")
		e := pipeline.Event{ID: pipeline.EventID(id, int64(i+1)), NoticeID: id, Version: int64(i + 1), Type: pipeline.EventType(typ),
			At: t0.Add(min), Issuer: issuer, Provider: provider, Kind: kind}
		switch e.Type {
		case pipeline.EventRemoved:
			in := detail != "late"
			e.InTime = &in
			secs := min.Seconds() - 60 // delivered at minute 1
			e.Seconds = &secs
		case pipeline.EventBlocked:
			e.Ground = pipeline.Ground(detail)
		}
		h.events = append(h.events, e)
	}
}

func f(v float64) *float64 { return &v }

func TestBuildCountsEveryFigure(t *testing.T) {
	var h history
	o, r := pipeline.KindRemovalOrder, pipeline.KindReferral
	h.notice("de-bka", "videohost", o, "a", "received@0", "delivered@1", "acknowledged@2", "removed@11")   // 10 min
	h.notice("de-bka", "videohost", o, "b", "received@0", "delivered@1", "removed@31")                     // 30 min
	h.notice("de-bka", "filedrop", o, "c", "received@0", "delivered@1", "escalated@61", "removed:late@91") // 90 min, late
	h.notice("de-bka", "filedrop", o, "d", "received@0", "delivered@1", "blocked:insufficient_info@5", "clarified@20", "removed@41")
	h.notice("fr-pharos", "videohost", o, "e", "received@0", "delivered@1", "blocked:force_majeure@3", "resumed@30", "removed@6")
	h.notice("fr-pharos", "videohost", o, "f", "received@0", "delivered@1", "blocked:manifest_error@2", "withdrawn@9")
	h.notice("eu-iru", "videohost", r, "g", "received@0", "delivered@1", "declined@5")
	h.notice("eu-iru", "filedrop", r, "h", "received@0", "delivered@1", "removed@3")
	h.notice("eu-iru", "filedrop", r, "i", "received@0", "withdrawn@2")
	h.notice("de-bka", "videohost", o, "outside", "received@-10", "delivered@-9", "removed@2000") // outside the period but removed late
	// Redelivered events count once.
	events := append(h.events, h.events[:4]...)

	got := report.Build(events, t0, t0.Add(24*time.Hour))
	want := report.Report{
		From: t0, To: t0.Add(24 * time.Hour),
		Total: report.Figures{OrdersReceived: 6, ReferralsReceived: 3, OrdersDelivered: 6, ReferralsDelivered: 2,
			OrdersRemovedInTime: 4, OrdersRemovedLate: 1, ReferralsRemoved: 1,
			BlockedForceMajeure: 1, BlockedManifestError: 1, BlockedInsufficientInfo: 1, Declined: 1, Withdrawn: 2,
			// removal orders removed: 10, 30, 90, 40, 5 minutes → sorted 5 10 30 40 90
			MedianSeconds: f(30 * 60), P90Seconds: f(90 * 60)},
		Issuers: []report.Row{
			{Name: "de-bka", Figures: report.Figures{OrdersReceived: 4, OrdersDelivered: 4, OrdersRemovedInTime: 3, OrdersRemovedLate: 1,
				BlockedInsufficientInfo: 1, MedianSeconds: f(30 * 60), P90Seconds: f(90 * 60)}},
			{Name: "eu-iru", Figures: report.Figures{ReferralsReceived: 3, ReferralsDelivered: 2, ReferralsRemoved: 1, Declined: 1, Withdrawn: 1}},
			{Name: "fr-pharos", Figures: report.Figures{OrdersReceived: 2, OrdersDelivered: 2, OrdersRemovedInTime: 1,
				BlockedForceMajeure: 1, BlockedManifestError: 1, Withdrawn: 1, MedianSeconds: f(5 * 60), P90Seconds: f(5 * 60)}},
		},
		Providers: []report.Row{
			{Name: "filedrop", Figures: report.Figures{OrdersReceived: 2, ReferralsReceived: 2, OrdersDelivered: 2, ReferralsDelivered: 1,
				OrdersRemovedInTime: 1, OrdersRemovedLate: 1, ReferralsRemoved: 1, BlockedInsufficientInfo: 1, Withdrawn: 1,
				MedianSeconds: f(40 * 60), P90Seconds: f(90 * 60)}},
			{Name: "videohost", Figures: report.Figures{OrdersReceived: 4, ReferralsReceived: 1, OrdersDelivered: 4, ReferralsDelivered: 1,
				OrdersRemovedInTime: 3, BlockedForceMajeure: 1, BlockedManifestError: 1, Declined: 1, Withdrawn: 1,
				MedianSeconds: f(10 * 60), P90Seconds: f(30 * 60)}},
		},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(report.Figures{})); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	var md, cs, js bytes.Buffer
	if err := got.Markdown(&md); err != nil || !strings.Contains(md.String(), "| de-bka | 4 | 4 | 3 | 1 |") {
		t.Errorf("markdown:\n%s", md.String())
	}
	if err := got.CSV(&cs); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(recs) != 1+1+3+2 || recs[1][0] != "total" || recs[1][4] != "4" || recs[1][14] != "1800.0" || recs[1][15] != "5400.0" {
		t.Errorf("csv: %v %v", recs, err)
	}
	if err := got.JSON(&js); err != nil || !strings.Contains(js.String(), `"orders_removed_late": 1`) {
		t.Errorf("json: %s", js.String())
	}
}
