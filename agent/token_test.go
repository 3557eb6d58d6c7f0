package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresAt   string `json:"expires_at"`
	IDToken     string `json:"id_token"`
}

func TestTokenEndpoint(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	tests := []struct {
		path       string
		wantStatus int
		wantCode   string
	}{
		{"/v1/tokens/alpha", 200, ""},
		{"/v1/tokens/alpha?min_valid=30s", 200, ""},
		{"/v1/tokens/alpha?min_valid=30", 200, ""},
		{"/v1/tokens/alpha?min_valid=1.5", 200, ""},
		{"/v1/tokens/alpha?min_valid=1m30s", 200, ""},
		{"/v1/tokens/alpha?min_valid=0", 200, ""},
		{"/v1/tokens/alpha?min_valid=%33%30s", 200, ""}, // "30s", escaped
		{"/v1/tokens/alpha?min%5Fvalid=30s", 200, ""},
		{"/v1/tokens/alpha?&min_valid=30s", 200, ""},
		{"/v1/tokens/alpha?min_valid=", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=abc", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=-1s", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=-5", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=25h", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=1e400", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=NaN", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=%zz", 400, CodeBadRequest},
		{"/v1/tokens/alpha?min_valid=1s&min_valid=2s", 400, CodeBadRequest},
		{"/v1/tokens/alpha?minvalid=30s", 400, CodeBadRequest},
		{"/v1/tokens/alpha?%zz=1", 400, CodeBadRequest},
		{"/v1/tokens/nope", 404, CodeUnknownToken},
		{"/v1/tokens/nope?min_valid=1s", 404, CodeUnknownToken},
		{"/v1/tokens/a%2Fb", 404, CodeUnknownToken}, // through the mux
		{"/v1/tokens/", 404, CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, hdr, body := e.do(t, "GET", tt.path, "")
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", status, tt.wantStatus, body)
			}
			if got := hdr.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q", got)
			}
			if got := hdr.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			if tt.wantStatus != 200 {
				if got := errCode(t, body); got != tt.wantCode {
					t.Errorf("code %q, want %q (body %s)", got, tt.wantCode, body)
				}
				return
			}
			var a tokenAnswer
			if err := json.Unmarshal([]byte(body), &a); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if a.AccessToken != "SECRET-access-alpha-0" || a.TokenType != "Bearer" || a.IDToken != "SECRET-id-alpha-0" {
				t.Errorf("answer %+v", a)
			}
			exp, err := time.Parse(time.RFC3339, a.ExpiresAt)
			if err != nil || exp.Location() != time.UTC {
				t.Fatalf("expires_at %q: %v", a.ExpiresAt, err)
			}
			if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
				t.Errorf("expires_at %v from now", d)
			}
		})
	}
	if n := e.srcs["alpha"].calls.Load(); n != 0 {
		t.Errorf("%d refreshes; a valid token must be served without one", n)
	}
}

func TestTokenEscapedName(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	e.add(t, "team/app", time.Hour, nil)
	status, _, body := e.do(t, "GET", "/v1/tokens/team%2Fapp", "")
	if status != 200 || !strings.Contains(body, "SECRET-access-team/app-0") {
		t.Fatalf("status %d body %s", status, body)
	}
}

func TestTokenWithoutExpiryOrIDToken(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	src := &source{name: "plain"}
	_, err := e.k.Add(tokenkeeper.TokenConfig{Name: "plain", Source: src,
		Token: &oauth2.Token{AccessToken: "SECRET-plain", TokenType: "mac"}})
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := e.do(t, "GET", "/v1/tokens/plain?min_valid=1h", "")
	if want := `{"access_token":"SECRET-plain","token_type":"MAC"}` + "\n"; status != 200 || body != want {
		t.Fatalf("status %d body %q, want %q", status, body, want)
	}
}

func TestTokenWaitsForRefresh(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	// Valid for 20 more minutes, but the caller needs 30.
	src := e.add(t, "soon", 20*time.Minute, nil)
	status, _, body := e.do(t, "GET", "/v1/tokens/soon?min_valid=30m", "")
	if status != 200 {
		t.Fatalf("status %d body %s", status, body)
	}
	var a tokenAnswer
	json.Unmarshal([]byte(body), &a)
	if a.AccessToken != "SECRET-access-soon-1" || src.calls.Load() != 1 {
		t.Fatalf("got %q after %d refreshes", a.AccessToken, src.calls.Load())
	}
	// The new token is cached: no further refresh.
	for range 3 {
		if status, _, _ := e.do(t, "GET", "/v1/tokens/soon?min_valid=30m", ""); status != 200 {
			t.Fatal(status)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	_, _, m := e.do(t, "GET", "/metrics", "")
	for _, want := range []string{
		`tokenkeeper_agent_token_requests_total{result="waited"} 1`,
		`tokenkeeper_agent_token_requests_total{result="cached"} 3`,
		`tokenkeeper_agent_token_wait_seconds_count 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestTokenMinValidUnsatisfiable(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	src := e.add(t, "short", 0, nil) // fetched at first use, lives an hour
	if status, _, body := e.do(t, "GET", "/v1/tokens/short", ""); status != 200 {
		t.Fatalf("status %d body %s", status, body)
	}
	calls := src.calls.Load()
	// Longer than any token of this source lives: refused without a refresh.
	status, _, body := e.do(t, "GET", "/v1/tokens/short?min_valid=2h", "")
	if status != 422 || errCode(t, body) != CodeMinValidUnsatisfiable {
		t.Fatalf("status %d body %s", status, body)
	}
	if n := src.calls.Load(); n != calls {
		t.Errorf("refused min_valid caused %d refreshes", n-calls)
	}
	// Shorter than the lifetime but beyond what the keeper's expiry margin
	// leaves: the keeper refreshes once, then says no.
	status, _, body = e.do(t, "GET", "/v1/tokens/short?min_valid=3599s", "")
	if status != 422 || errCode(t, body) != CodeMinValidUnsatisfiable {
		t.Fatalf("status %d body %s", status, body)
	}
}

func TestTokenErrors(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	tests := []struct {
		name       string
		fn         func(ctx context.Context, n int64) (*oauth2.Token, error)
		wantStatus int
		wantCode   string
		retryAfter bool
	}{
		{"revoked", func(context.Context, int64) (*oauth2.Token, error) {
			return nil, &tokenkeeper.RefreshError{Code: "invalid_grant", Permanent: true}
		}, http.StatusConflict, CodeReauthRequired, false},
		{"down", func(context.Context, int64) (*oauth2.Token, error) {
			return nil, tokenkeeper.RetryAfter(errors.New("503 from provider"), 7*time.Second)
		}, http.StatusBadGateway, CodeRefreshFailed, true},
		{"panics", func(context.Context, int64) (*oauth2.Token, error) {
			panic("boom")
		}, http.StatusBadGateway, CodeRefreshFailed, false},
		{"slow", func(ctx context.Context, _ int64) (*oauth2.Token, error) {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return nil, errors.New("gave up")
		}, http.StatusGatewayTimeout, CodeTimeout, false},
	}
	e := newEnv(t, envConfig{secret: testSecret, noStart: true, opts: Options{WaitTimeout: 50 * time.Millisecond}})
	for _, tt := range tests {
		e.add(t, tt.name, 0, tt.fn)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := e.do(t, "GET", "/v1/tokens/"+tt.name, "")
			if status != tt.wantStatus || errCode(t, body) != tt.wantCode {
				t.Fatalf("status %d body %s, want %d %s", status, body, tt.wantStatus, tt.wantCode)
			}
			if got := hdr.Get("Retry-After"); (got != "") != tt.retryAfter {
				t.Errorf("Retry-After %q", got)
			}
		})
	}
	// A second request for the revoked token fails at once, the same way.
	if status, _, body := e.do(t, "GET", "/v1/tokens/revoked", ""); status != http.StatusConflict {
		t.Errorf("status %d body %s", status, body)
	}
}

func TestTokenCircuitOpen(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true,
		keeper: tokenkeeper.Config{Breaker: tokenkeeper.BreakerSettings{Failures: 1, OpenFor: time.Minute}}})
	e.add(t, "flaky", 0, func(context.Context, int64) (*oauth2.Token, error) {
		return nil, errors.New("connection refused")
	})
	// The keeper fetches the token at once; wait until that attempt opened
	// the breaker.
	e.ev.wait(t, 0, tokenkeeper.EventBreaker, "flaky")
	status, hdr, body := e.do(t, "GET", "/v1/tokens/flaky", "")
	if status != http.StatusServiceUnavailable || errCode(t, body) != CodeCircuitOpen {
		t.Fatalf("status %d body %s", status, body)
	}
	// The breaker opened for a minute: Retry-After says when it lets a
	// probe through.
	ra, err := strconv.Atoi(hdr.Get("Retry-After"))
	if err != nil || ra < 50 || ra > 60 {
		t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
	}
}

func TestTokenKeeperClosed(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	e.add(t, "valid", time.Hour, nil)
	e.add(t, "never", 0, func(ctx context.Context, _ int64) (*oauth2.Token, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	e.k.Close()
	if status, _, body := e.do(t, "GET", "/v1/tokens/valid", ""); status != 200 {
		t.Errorf("a valid token must still be served: %d %s", status, body)
	}
	status, _, body := e.do(t, "GET", "/v1/tokens/never", "")
	if status != http.StatusServiceUnavailable || errCode(t, body) != CodeClosed {
		t.Errorf("status %d body %s", status, body)
	}
}

func TestTokenRemovedForgetsCache(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	if status, _, _ := e.do(t, "GET", "/v1/tokens/alpha", ""); status != 200 {
		t.Fatal(status)
	}
	n := e.ev.len()
	if err := e.k.Remove("alpha"); err != nil {
		t.Fatal(err)
	}
	e.ev.wait(t, n, tokenkeeper.EventRemoved, "alpha")
	if _, ok := (*e.s.cache.Load())["alpha"]; ok {
		t.Error("cache entry kept after removal")
	}
	if status, _, _ := e.do(t, "GET", "/v1/tokens/alpha", ""); status != 404 {
		t.Errorf("status %d after removal", status)
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quo"te`, `back\slash`, "new\nline\r\t", "\x00\x01\x1f", "<script>&</script>",
		"héllo wörld", "日本語", "\u2028\u2029", "bad\xffutf8", "\xc3", "emoji 🎉", "del\x7f",
	} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("abc")
	f.Add("\u2028<>&\"\\\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
		if !utf8.Valid(appendJSONString(nil, s)) {
			t.Error("invalid UTF-8 out")
		}
	})
}

// discard is a ResponseWriter that keeps nothing, for allocation counts.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func TestTokenHotPathAllocs(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	h := e.s.Handler()
	r, _ := http.NewRequest("GET", "http://127.0.0.1:8377/v1/tokens/alpha", nil)
	r.Header.Set("Authorization", "Bearer "+testSecret)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, r) // fills the cache
	allocs := testing.AllocsPerRun(1000, func() {
		h.ServeHTTP(w, r)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per token request, want 0", allocs)
	}
}

func BenchmarkTokenHandler(b *testing.B) {
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	src := &source{name: "bench", life: time.Hour}
	if _, err := k.Add(tokenkeeper.TokenConfig{Name: "bench", Source: src, Token: src.token(0, time.Now().Add(time.Hour))}); err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Keeper: k, Secret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r, _ := http.NewRequest("GET", "http://127.0.0.1:8377/v1/tokens/bench?min_valid=30s", nil)
		r.Header.Set("Authorization", "Bearer "+testSecret)
		w := &discard{h: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}
