package notifier

import (
	"errors"
	"fmt"
	"time"
)

// AttemptError describes a failed delivery attempt.
type AttemptError struct {
	// Status is the HTTP status of a webhook answer; 0 when none came.
	Status int
	// RetryAfter is the delay the provider asked for (Retry-After).
	RetryAfter time.Duration
	// Permanent failures are not retried: the notice fails and waits for
	// an operator (a 4xx other than 408 and 429, a redirect, a disabled
	// endpoint).
	Permanent bool
	// Gone: the endpoint answered 410 and is to be disabled.
	Gone bool
	Err  error
}

func (e *AttemptError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err)
	}
	return e.Err.Error()
}

func (e *AttemptError) Unwrap() error { return e.Err }

// Errors carried by AttemptError.
var (
	ErrEndpointDisabled = errors.New("webhook endpoint disabled after 410 Gone")
	ErrCircuitOpen      = errors.New("circuit open: the endpoint failed repeatedly, waiting before the next try")
	ErrLaneFull         = errors.New("delivery queue for the provider is full")
)

// Permanent reports whether err is a delivery failure not to retry.
func Permanent(err error) bool {
	var ae *AttemptError
	return errors.As(err, &ae) && ae.Permanent
}

// Classify returns the AttemptError in err, or wraps err as a retryable
// one.
func Classify(err error) *AttemptError {
	var ae *AttemptError
	if errors.As(err, &ae) {
		return ae
	}
	return &AttemptError{Err: err}
}
