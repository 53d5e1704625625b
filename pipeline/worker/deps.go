package worker

import (
	"context"
	"time"

	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// IntakeStore is what the intake worker needs of the tracker. Safe for
// concurrent use.
type IntakeStore interface {
	Create(ctx context.Context, n *pipeline.Notice, body []byte, now, firstFollowUp time.Time) (int64, error)
	Get(ctx context.Context, id string) (tracker.Record, error)
	ApplyAction(ctx context.Context, a pipeline.Action, msgKey string, now time.Time) (int64, error)
}

// DeliveryStore records delivery attempts.
type DeliveryStore interface {
	Delivered(ctx context.Context, id string, now time.Time, window time.Duration, next time.Time, att *tracker.Attempt) (time.Time, error)
	AttemptFailed(ctx context.Context, id string, now time.Time, att tracker.Attempt, next, retryNotBefore time.Time) error
	Fail(ctx context.Context, id, token string, version int64, now time.Time, reason string, att *tracker.Attempt) (int64, error)
	FollowUp(ctx context.Context, id, token string, version int64, act string, now, next time.Time, ev pipeline.Event, att *tracker.Attempt) (int64, error)
	DisableEndpoint(ctx context.Context, provider string, d tracker.DisabledEndpoint) error
}

// FeedbackStore is what the feedback worker needs of the tracker.
type FeedbackStore interface {
	ApplyFeedback(ctx context.Context, f pipeline.Feedback, msgKey string, now time.Time) (tracker.Applied, error)
}

// ScheduleStore is what the scheduler needs of the tracker.
type ScheduleStore interface {
	Shards() int
	Claim(ctx context.Context, shard int, now, leaseEnd time.Time, limit int, token string) ([]string, error)
	GetMany(ctx context.Context, ids []string) (map[string]tracker.Record, error)
	FollowUp(ctx context.Context, id, token string, version int64, act string, now, next time.Time, ev pipeline.Event, att *tracker.Attempt) (int64, error)
	Fail(ctx context.Context, id, token string, version int64, now time.Time, reason string, att *tracker.Attempt) (int64, error)
}

// OutboxStore is what the relay needs of the tracker.
type OutboxStore interface {
	Shards() int
	ReadOutboxes(ctx context.Context, shards []int, limit int) (map[int][]tracker.OutboxEntry, error)
	TrimOutboxes(ctx context.Context, ids map[int][]string) error
	AcquireShard(ctx context.Context, shard int, owner string, ttl time.Duration) (bool, error)
	ReleaseShard(ctx context.Context, shard int, owner string) error
}

// Dispatcher delivers a notice over its provider's channel and reports the
// outcome to done, at once or later; see notifier.Notifier.Dispatch.
type Dispatcher interface {
	Dispatch(ctx context.Context, d notifier.Delivery, done notifier.Done) bool
	Channel(provider string) string
}

var (
	_ IntakeStore   = (*tracker.Store)(nil)
	_ FeedbackStore = (*tracker.Store)(nil)
	_ ScheduleStore = (*tracker.Store)(nil)
	_ OutboxStore   = (*tracker.Store)(nil)
	_ DeliveryStore = (*tracker.Store)(nil)
	_ Dispatcher    = (*notifier.Notifier)(nil)
)
