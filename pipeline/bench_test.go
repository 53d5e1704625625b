package pipeline_test

import (
	"testing"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
)

func BenchmarkDecodeNotice(b *testing.B) {
	data := []byte(validOrder)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pipeline.DecodeNotice(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeFeedback(b *testing.B) {
	data := []byte(`{"schema":"takedown.feedback/v1","notice_id":"` + pipeline.NoticeID("de-bka", "R") + `","provider":"videohost","type":"removed","action_at":"2026-11-27T09:41:10Z","provider_reference":"VH-77121"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pipeline.DecodeFeedback(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlan(b *testing.B) {
	p := pipeline.DefaultPolicy(pipeline.KindRemovalOrder)
	s := pipeline.Snapshot{State: pipeline.StateDelivered, ClockStart: d0, Deadline: d0.Add(time.Hour), Window: time.Hour, Deliveries: 1, LastDelivery: d0}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Plan(s, d0.Add(30*time.Minute))
	}
}
