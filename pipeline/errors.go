package pipeline

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors shared by every adapter. Test with errors.Is.
var (
	// ErrInvalid reports input that failed decoding or validation. The
	// concrete error is a *ValidationError naming the fields.
	ErrInvalid = errors.New("invalid input")
	// ErrTooLarge reports a body over the decoder's size limit.
	ErrTooLarge = errors.New("body too large")
	// ErrNotFound reports a notice id that is not tracked.
	ErrNotFound = errors.New("notice not found")
	// ErrConflict reports a submission whose issuer and reference match an
	// existing notice but whose content differs. The original is untouched.
	ErrConflict = errors.New("conflicting submission for an existing reference")
	// ErrDuplicate reports a submission or transition that was already
	// applied. Callers treat it as success: delivery is at least once.
	ErrDuplicate = errors.New("already applied")
	// ErrIllegalTransition reports a transition the notice's current state
	// does not allow (removal of a withdrawn notice, for example).
	ErrIllegalTransition = errors.New("illegal transition")
	// ErrForbidden reports a principal acting on a notice that is not
	// theirs: a provider answering for another provider's notice, or an
	// issuer withdrawing another issuer's notice.
	ErrForbidden = errors.New("not this principal's notice")
	// ErrUnknownPrincipal reports an issuer or provider missing from the
	// directory.
	ErrUnknownPrincipal = errors.New("unknown issuer or provider")
	// ErrStale reports a scheduler write whose claim or version no longer
	// holds: another replica took the work over, or the notice changed.
	ErrStale = errors.New("stale claim or version")
)

// FieldError names one wrong field of an input and what is wrong with it.
// Field uses JSON paths such as "content[1].url".
type FieldError struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every wrong field of one input. It matches
// ErrInvalid under errors.Is.
type ValidationError struct {
	What   string       `json:"what"` // "notice", "feedback", "action", "directory"
	Fields []FieldError `json:"fields"`
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Problem
	}
	return fmt.Sprintf("invalid %s: %s", e.What, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalid) hold for every validation error.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// fieldErrors collects problems while validating one input.
type fieldErrors struct {
	what string
	list []FieldError
}

func (f *fieldErrors) add(field, format string, args ...any) {
	f.list = append(f.list, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (f *fieldErrors) err() error {
	if len(f.list) == 0 {
		return nil
	}
	return &ValidationError{What: f.what, Fields: f.list}
}
