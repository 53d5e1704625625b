package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Size limits of outside input. A removal order with a hundred URLs and a
// long explanation stays well below MaxNoticeBytes.
const (
	MaxNoticeBytes   = 64 << 10
	MaxFeedbackBytes = 16 << 10
	MaxActionBytes   = 16 << 10
)

// decodeStrict decodes exactly one JSON object from data into v, refusing
// unknown fields and trailing data, and turns decoder errors into a
// *ValidationError that names the field.
func decodeStrict(what string, data []byte, limit int, v any) error {
	if len(data) > limit {
		return fmt.Errorf("%s of %d bytes exceeds the limit of %d bytes: %w", what, len(data), limit, ErrTooLarge)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFieldError(what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &ValidationError{What: what, Fields: []FieldError{{Field: "(body)", Problem: "trailing data after the JSON object"}}}
	}
	return nil
}

func jsonFieldError(what string, err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
		fe        FieldError
	)
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(body)"
		}
		fe = FieldError{Field: field, Problem: fmt.Sprintf("must be %s, not JSON %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)}
	case errors.As(err, &syntaxErr):
		fe = FieldError{Field: "(body)", Problem: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		fe = FieldError{Field: "(body)", Problem: "empty or truncated JSON"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		fe = FieldError{Field: name, Problem: "unknown field"}
	default:
		// Errors from our own UnmarshalJSON methods (times, enums) land here.
		fe = FieldError{Field: "(body)", Problem: err.Error()}
	}
	return &ValidationError{What: what, Fields: []FieldError{fe}}
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int", "int64", "uint", "uint64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	default:
		return "a " + k
	}
}

func jsonUnmarshalLenient(data []byte, v any) error { return json.Unmarshal(data, v) }
