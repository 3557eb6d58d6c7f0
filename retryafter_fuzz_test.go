package tokenkeeper_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// FuzzParseRetryAfter checks ParseRetryAfter on any input: it never panics,
// a rejected value gives 0, a delay is within [0, 24h], and accepted values
// mean what RFC 9110 says (delay-seconds, or an HTTP date relative to now).
// The seed corpus is in testdata/fuzz/FuzzParseRetryAfter.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []string{
		"", "0", "120", " 7 ", "86400", "86401", "18446744073709551616", "-1", "+5", "1.5", "5s",
		"Sat, 01 Mar 2025 12:00:30 GMT", "Saturday, 01-Mar-25 12:00:30 GMT", "Sat Mar  1 12:00:30 2025",
		"Fri, 28 Feb 2025 12:00:00 GMT", "Sat, 01 Mar 2125 12:00:00 GMT", "<html>503</html>", "\x00", "１２",
	} {
		f.Add(v, now.Unix())
	}
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		now := time.Unix(nowUnix, 0).UTC()
		d, ok := tokenkeeper.ParseRetryAfter(v, now)
		if d2, ok2 := tokenkeeper.ParseRetryAfter(v, now); d2 != d || ok2 != ok {
			t.Fatalf("not deterministic: %v,%v then %v,%v", d, ok, d2, ok2)
		}
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, false: want 0 with false", v, d)
			}
			return
		}
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v: outside [0, 24h]", v, d)
		}
		s := strings.TrimSpace(v)
		if s == "" {
			t.Fatalf("ParseRetryAfter(%q) accepted a blank value", v)
		}
		if s[0] >= '0' && s[0] <= '9' {
			n, err := strconv.ParseUint(s, 10, 64)
			switch {
			case err == nil && n <= 86400:
				if d != time.Duration(n)*time.Second {
					t.Fatalf("ParseRetryAfter(%q) = %v, want %ds", v, d, n)
				}
			case err == nil || strings.Contains(err.Error(), "out of range"):
				if d != 24*time.Hour {
					t.Fatalf("ParseRetryAfter(%q) = %v, want the 24h cap", v, d)
				}
			default:
				t.Fatalf("ParseRetryAfter(%q) accepted a malformed number (%v)", v, d)
			}
			return
		}
		at, err := http.ParseTime(s)
		if err != nil {
			t.Fatalf("ParseRetryAfter(%q) = %v, true, but it is neither a number nor an HTTP date", v, d)
		}
		want := min(max(at.Sub(now), 0), 24*time.Hour)
		if d != want {
			t.Fatalf("ParseRetryAfter(%q) at %v = %v, want %v", v, now, d, want)
		}
	})
}
