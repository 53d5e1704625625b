package pipeline

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the event's JSON to dst: byte for byte what
// json.Marshal writes for it, written directly. The relay encodes every
// event of every notice, and json.Marshal spends most of that time on
// reflection and on a second pass over the embedded notice. Notice must
// hold compact JSON as Notice.JSON writes it (it is appended as it is).
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"schema":`...)
	dst = appendJSONString(dst, e.Schema)
	dst = append(dst, `,"id":`...)
	dst = appendJSONString(dst, e.ID)
	dst = append(dst, `,"notice_id":`...)
	dst = appendJSONString(dst, e.NoticeID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, e.Version, 10)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, string(e.Type))
	dst = append(dst, `,"at":`...)
	dst = appendJSONTime(dst, e.At)
	dst = append(dst, `,"state":`...)
	dst = appendJSONString(dst, string(e.State))
	dst = append(dst, `,"issuer":`...)
	dst = appendJSONString(dst, e.Issuer)
	dst = append(dst, `,"provider":`...)
	dst = appendJSONString(dst, e.Provider)
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, string(e.Kind))
	dst = appendOptString(dst, `,"reference":`, e.Reference)
	dst = appendOptTime(dst, `,"deadline":`, e.Deadline)
	if e.Overdue {
		dst = append(dst, `,"overdue":true`...)
	}
	dst = appendOptTime(dst, `,"delivered_at":`, e.DeliveredAt)
	dst = appendOptString(dst, `,"outcome":`, string(e.Outcome))
	dst = appendOptTime(dst, `,"action_at":`, e.ActionAt)
	if e.InTime != nil {
		dst = append(dst, `,"in_time":`...)
		dst = strconv.AppendBool(dst, *e.InTime)
	}
	if e.Seconds != nil {
		dst = append(dst, `,"seconds":`...)
		dst = appendJSONFloat(dst, *e.Seconds)
	}
	dst = appendOptString(dst, `,"ground":`, string(e.Ground))
	dst = appendOptString(dst, `,"explanation":`, e.Explanation)
	dst = appendOptString(dst, `,"provider_reference":`, e.ProviderReference)
	if e.Attempt != 0 {
		dst = append(dst, `,"attempt":`...)
		dst = strconv.AppendInt(dst, int64(e.Attempt), 10)
	}
	if len(e.Notice) > 0 {
		dst = append(dst, `,"notice":`...)
		dst = append(dst, e.Notice...)
	}
	return append(dst, '}')
}

// appendOptString appends key and s, unless s is empty (omitempty).
func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendJSONString(append(dst, key...), s)
}

// appendOptTime appends key and *t, unless t is nil (omitempty).
func appendOptTime(dst []byte, key string, t *time.Time) []byte {
	if t == nil {
		return dst
	}
	return appendJSONTime(append(dst, key...), *t)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string: quoted,
// with HTML-significant characters, control characters and the line and
// paragraph separators escaped, and invalid UTF-8 replaced.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it.
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendJSONFloat appends f as encoding/json writes a float64.
func appendJSONFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}
