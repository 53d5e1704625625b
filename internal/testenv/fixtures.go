package testenv

import (
	"encoding/json"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
)

// Notice returns a valid notice of kind k from issuer to provider.
func Notice(issuer, reference, provider string, k pipeline.Kind) pipeline.Notice {
	return pipeline.Notice{
		Schema: pipeline.NoticeSchema, Kind: k, Issuer: issuer, Reference: reference,
		Provider: provider, IssuedAt: time.Date(2026, 11, 27, 9, 15, 0, 0, time.UTC),
		MemberState: "DE",
		Content:     []pipeline.ContentItem{{URL: "https://videohost.example/v/" + reference, Locator: "video at 00:42"}},
		Reasons:     []pipeline.Reason{pipeline.ReasonIncitement},
		Explanation: "Video glorifies a terrorist attack.",
		Language:    "de",
		Contact:     pipeline.Contact{Name: "TCO desk", Email: "tco@authority.example"},
	}
}

// JSON marshals v or panics; for fixtures only.
func JSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Time returns a pointer to t; for optional fixture fields.
func Time(t time.Time) *time.Time { return &t }
