package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// source is a fake identity provider. Every token it issues carries
// "SECRET" in its values, so tests can scan any output for leaks.
type source struct {
	name  string
	life  time.Duration
	calls atomic.Int64
	// fn, if set, answers instead (n is the call number, from 1).
	fn func(ctx context.Context, n int64) (*oauth2.Token, error)
}

func (s *source) Refresh(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
	n := s.calls.Add(1)
	if s.fn != nil {
		return s.fn(ctx, n)
	}
	return s.token(n, time.Now().Add(s.life)), nil
}

func (s *source) token(n int64, exp time.Time) *oauth2.Token {
	tok := &oauth2.Token{
		AccessToken:  fmt.Sprintf("SECRET-access-%s-%d", s.name, n),
		RefreshToken: fmt.Sprintf("SECRET-refresh-%s-%d", s.name, n),
		TokenType:    "Bearer",
		Expiry:       exp,
	}
	return tok.WithExtra(map[string]any{"id_token": fmt.Sprintf("SECRET-id-%s-%d", s.name, n)})
}

// events lets a test wait for keeper events after the server saw them.
type events struct {
	mu   sync.Mutex
	all  []tokenkeeper.Event
	wake chan struct{}
}

func (ev *events) add(e tokenkeeper.Event) {
	ev.mu.Lock()
	ev.all = append(ev.all, e)
	w := ev.wake
	ev.wake = nil
	ev.mu.Unlock()
	if w != nil {
		close(w)
	}
}

// wait returns the first event after index from that matches, waiting up
// to 10 s.
func (ev *events) wait(t *testing.T, from int, kind tokenkeeper.EventKind, token string) (tokenkeeper.Event, int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		ev.mu.Lock()
		for i := from; i < len(ev.all); i++ {
			if e := ev.all[i]; e.Kind == kind && (token == "" || e.Token == token) {
				ev.mu.Unlock()
				return e, i + 1
			}
		}
		if ev.wake == nil {
			ev.wake = make(chan struct{})
		}
		w := ev.wake
		ev.mu.Unlock()
		select {
		case <-w:
		case <-deadline.C:
			t.Fatalf("no %v event for %q within 10s", kind, token)
		}
	}
}

func (ev *events) len() int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.all)
}

// env is a keeper, an agent server on it and an httptest server.
type env struct {
	k    *tokenkeeper.Keeper
	s    *Server
	ts   *httptest.Server
	ev   *events
	logs *syncBuffer
	srcs map[string]*source
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type envConfig struct {
	secret  string
	opts    Options
	keeper  tokenkeeper.Config
	noStart bool // do not add the default tokens
}

// newEnv starts a keeper holding tokens "alpha" and "beta" (valid for an
// hour, so nothing is refreshed unless a test asks) and an agent on it.
func newEnv(t *testing.T, c envConfig) *env {
	t.Helper()
	e := &env{ev: &events{}, logs: &syncBuffer{}, srcs: map[string]*source{}}
	var srv atomic.Pointer[Server]
	c.keeper.OnEvent = func(ev tokenkeeper.Event) {
		if s := srv.Load(); s != nil {
			s.Event(ev)
		}
		e.ev.add(ev)
	}
	if c.keeper.Location == nil {
		c.keeper.Location = time.UTC
	}
	k, err := tokenkeeper.New(c.keeper)
	if err != nil {
		t.Fatal(err)
	}
	e.k = k
	opts := c.opts
	opts.Keeper = k
	opts.Secret = c.secret
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(s)
	e.s = s
	e.ts = httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		e.ts.Close()
		k.Close()
		if strings.Contains(e.logs.String(), "SECRET") || (c.secret != "" && strings.Contains(e.logs.String(), c.secret)) {
			t.Errorf("a secret reached the logs:\n%s", e.logs.String())
		}
	})
	if !c.noStart {
		e.add(t, "alpha", time.Hour, nil)
		e.add(t, "beta", time.Hour, nil)
	}
	return e
}

// add keeps a token with an initial value valid for life (none if life is
// zero).
func (e *env) add(t *testing.T, name string, life time.Duration, fn func(ctx context.Context, n int64) (*oauth2.Token, error)) *source {
	t.Helper()
	src := &source{name: name, life: time.Hour, fn: fn}
	tc := tokenkeeper.TokenConfig{Name: name, Source: src, Policy: &tokenkeeper.Policy{NoJitter: true}}
	if life > 0 {
		tc.Token = src.token(0, time.Now().Add(life))
	}
	if _, err := e.k.Add(tc); err != nil {
		t.Fatal(err)
	}
	e.srcs[name] = src
	return src
}

// req sends a request to the test server with the test secret (if auth),
// and returns the status, headers and body.
type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }
func withHost(h string) reqOpt      { return func(r *http.Request) { r.Host = h } }
func noAuth() reqOpt                { return func(r *http.Request) { r.Header.Del("Authorization") } }

func (e *env) do(t *testing.T, method, path, body string, opts ...reqOpt) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+testSecret)
	for _, o := range opts {
		o(r)
	}
	resp, err := e.ts.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// errCode extracts "code" from an error body.
func errCode(t *testing.T, body string) string {
	t.Helper()
	const k = `"code":"`
	i := strings.Index(body, k)
	if i < 0 {
		return ""
	}
	rest := body[i+len(k):]
	return rest[:strings.IndexByte(rest, '"')]
}
