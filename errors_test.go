package tokenkeeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"0", 0, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"99999999999999999999999", 24 * time.Hour, true},
		{"100000", 24 * time.Hour, true},
		{"Sat, 28 Nov 2026 12:01:30 GMT", 90 * time.Second, true},
		{"Sat, 28 Nov 2026 11:00:00 GMT", 0, true},
		{"Sun, 06 Nov 1994 08:49:37 GMT", 0, true},
		{"Monday, 30-Nov-26 12:00:00 GMT", 48 * time.Hour, true}, // RFC 850, capped below
		{"soon", 0, false},
	} {
		got, ok := ParseRetryAfter(tc.in, now)
		if tc.want > 24*time.Hour {
			tc.want = 24 * time.Hour
		}
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	retrieve := func(status int, code string, h http.Header, body string) error {
		return fmt.Errorf("wrapped: %w", &oauth2.RetrieveError{
			Response: &http.Response{StatusCode: status, Header: h}, ErrorCode: code, Body: []byte(body),
		})
	}
	for _, tc := range []struct {
		name       string
		err        error
		permanent  bool
		status     int
		code       string
		retryAfter time.Duration
	}{
		{"invalid_grant", retrieve(400, "invalid_grant", hdr(), `{"error":"invalid_grant"}`), true, 400, "invalid_grant", 0},
		{"invalid_client", retrieve(401, "invalid_client", hdr(), ""), true, 401, "invalid_client", 0},
		{"unauthorized_client", retrieve(400, "unauthorized_client", hdr(), ""), true, 400, "unauthorized_client", 0},
		{"bare 401", retrieve(401, "", hdr(), "nope"), true, 401, "", 0},
		{"503 retry-after", retrieve(503, "", hdr("Retry-After", "30"), "<html>down</html>"), false, 503, "", 30 * time.Second},
		{"429", retrieve(429, "", hdr("Retry-After", "5"), ""), false, 429, "", 5 * time.Second},
		{"temporarily_unavailable", retrieve(400, "temporarily_unavailable", hdr(), ""), false, 400, "temporarily_unavailable", 0},
		{"network", errors.New("dial tcp: connection refused"), false, 0, "", 0},
		{"timeout", context.DeadlineExceeded, false, 0, "", 0},
		{"Permanent wrapper", Permanent(errors.New("revoked")), true, 0, "", 0},
		{"RetryAfter wrapper", RetryAfter(errors.New("busy"), time.Minute), false, 0, "", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := Classify(tc.err)
			got := []any{re.Permanent, re.Status, re.Code, re.RetryAfter, re.Temporary()}
			want := []any{tc.permanent, tc.status, tc.code, tc.retryAfter, !tc.permanent}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("Classify mismatch (-want +got):\n%s", d)
			}
			if re.Error() == "" || !strings.HasPrefix(re.Error(), "tokenkeeper: ") {
				t.Errorf("Error() = %q", re.Error())
			}
		})
	}
	if Classify(nil) != nil || Permanent(nil) != nil || RetryAfter(nil, time.Second) != nil {
		t.Error("nil errors must stay nil")
	}
}

// No token value survives into an error message or scrubbed body.
func TestScrubBody(t *testing.T) {
	secrets := []string{"AT-SECRET", "RT-SECRET", "ID-SECRET", "CS-SECRET", "PW-SECRET"}
	for _, body := range []string{
		`{"access_token":"AT-SECRET","refresh_token": "RT-SECRET","id_token":"ID-SECRET","error":"x"}`,
		`{"Access_Token" :  "AT-SECRET", "expires_in": 3600}`,
		`grant_type=refresh_token&refresh_token=RT-SECRET&client_secret=CS-SECRET`,
		`password=PW-SECRET&username=bob`,
		`{"access_token":"AT-SECRET`,
		`{"access_token": 12345, "token":"RT-SECRET"}`,
		`{"refresh_token":"RT-\"SECRET\"", "note":"ok"}`,
		strings.Repeat("x", 5000) + `access_token=AT-SECRET`,
		"{\"x\":\"\u212a\u212a\u212a\u212a\u212a\u212a\u212a\u212a\",\"access_token\":\"AT-SECRET\"}",
		`{"x":"ȺȺȺȺȺȺ","access_token":"AT-SECRET"}`,
		"\xc6\"token\":\"RT-SECRET\"",
	} {
		got := ScrubBody([]byte(body))
		for _, s := range secrets {
			if strings.Contains(got, s) || strings.Contains(got, `SECRET"`) {
				t.Errorf("ScrubBody(%.60q) = %q leaks %s", body, got, s)
			}
		}
		if len(got) > 256+len("…") {
			t.Errorf("ScrubBody result too long: %d", len(got))
		}
	}
	if got := ScrubBody([]byte(`my_token=keep&error=x`)); !strings.Contains(got, "my_token=keep") {
		t.Errorf("a longer field name was scrubbed: %q", got)
	}
	if got := ScrubBody([]byte(`{"error":"invalid_grant"}`)); got != `{"error":"invalid_grant"}` {
		t.Errorf("harmless body changed: %q", got)
	}
}

func FuzzScrubBody(f *testing.F) {
	f.Add([]byte(`{"access_token":"SECRETVALUE1","x":1}`))
	f.Add([]byte(`refresh_token=SECRETVALUE1&a=b`))
	f.Add([]byte(`{"id_token" : "SECRETVALUE1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := ScrubBody(body)
		if len(got) > 256+len("…") {
			t.Fatalf("too long: %d", len(got))
		}
		// A quoted JSON value after a token field never survives.
		const v = "SECRETVALUE1"
		for _, f := range []string{`"access_token":"`, `"refresh_token":"`, `"id_token":"`} {
			if strings.Contains(string(body), f+v+`"`) && strings.Contains(got, f+v) {
				t.Fatalf("secret survived in %q", got)
			}
		}
	})
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{0, 0.5, 500 * time.Millisecond},
		{1, 0.5, time.Second},
		{3, 0.999, 7992 * time.Millisecond},
		{10, 0.5, 150 * time.Second}, // capped at 5 min
		{100, 0.5, 150 * time.Second},
		{-1, 0.5, 500 * time.Millisecond},
		{0, -1, 0},
		{0, 2, time.Second - 1},
	} {
		if got := Backoff(tc.n, time.Second, 5*time.Minute, tc.r); got != tc.want {
			t.Errorf("Backoff(%d, r=%v) = %v, want %v", tc.n, tc.r, got, tc.want)
		}
	}
}

func TestErrorMessagesAndStrings(t *testing.T) {
	ce := &CircuitOpenError{Group: "idp", Until: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Cause: errors.New("boom")}
	re := &reauthError{name: "a", cause: errors.New("revoked")}
	pe := &PanicError{Token: "a", Type: "string"}
	for _, tc := range []struct {
		err  error
		is   error
		want string
	}{
		{ce, ErrCircuitOpen, `tokenkeeper: circuit breaker open for group "idp" until 2026-01-01T00:00:00Z: boom`},
		{re, ErrReauthRequired, `tokenkeeper: token "a" needs re-authentication: revoked`},
		{pe, nil, `tokenkeeper: source of "a" panicked (value of type string)`},
		{&nameError{name: "x", err: ErrUnknownToken}, ErrUnknownToken, `tokenkeeper: unknown token: "x"`},
		{&RefreshError{Status: 503, Code: "temporarily_unavailable", Description: "later", RetryAfter: time.Second},
			nil, "tokenkeeper: refresh failed: HTTP 503: temporarily_unavailable (later) [retry after 1s]"},
	} {
		if tc.err.Error() != tc.want {
			t.Errorf("Error() = %q, want %q", tc.err.Error(), tc.want)
		}
		if tc.is != nil && !errors.Is(tc.err, tc.is) {
			t.Errorf("%v is not %v", tc.err, tc.is)
		}
	}
	for i, s := range []fmt.Stringer{StateEmpty, StateDormant, State(99), EventSucceeded, EventKind(0), BreakerHalfOpen} {
		if s.String() == "" {
			t.Errorf("String %d empty", i)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{
		{StartLead: -1},
		{RetryBase: time.Minute, RetryMax: time.Second},
		{DefaultLifetime: 2 * time.Hour, MaxLifetime: time.Hour},
	} {
		if err := p.validate(); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("validate(%+v) = %v", p, err)
		}
	}
	if _, err := New(Config{Policy: Policy{IdleGap: -1}}); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("New with bad policy: %v", err)
	}
	if _, err := New(Config{Workers: -1}); err == nil {
		t.Error("New with negative workers succeeded")
	}
	if _, err := New(Config{Breaker: BreakerSettings{OpenFor: -1}}); err == nil {
		t.Error("New with negative breaker setting succeeded")
	}
	if m := (Policy{}).margin(time.Minute); m != 3*time.Second {
		t.Errorf("margin(1m) = %v, want 3s", m)
	}
	if m := (Policy{}).margin(time.Hour); m != DefaultExpiryMargin {
		t.Errorf("margin(1h) = %v", m)
	}
}

func TestRefreshInParsing(t *testing.T) {
	base := &oauth2.Token{AccessToken: "x"}
	for _, tc := range []struct {
		v    any
		want time.Duration
		ok   bool
	}{
		{float64(600), 10 * time.Minute, true},
		{"30", 30 * time.Second, true},
		{int64(5), 5 * time.Second, true},
		{int(5), 5 * time.Second, true},
		{"abc", 0, false},
		{float64(-1), 0, false},
		{float64(1e12), 0, false},
		{true, 0, false},
	} {
		got, ok := refreshIn(base.WithExtra(map[string]any{"refresh_in": tc.v}))
		if got != tc.want || ok != tc.ok {
			t.Errorf("refreshIn(%v) = %v, %v", tc.v, got, ok)
		}
	}
}
