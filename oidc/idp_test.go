package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeIdP is a small token endpoint with refresh-token rotation and reuse
// detection (a reused refresh token revokes the whole grant, as fosite and
// Hydra do). Tests inject faults with before.
type fakeIdP struct {
	clientID, secret string
	method           string // "basic", "post" or "" (either)
	lifetime         int    // expires_in; 0 leaves it out
	rotate           bool
	grace            int // reuses of a rotated refresh token accepted
	drop             int // answers to compute and then lose
	refreshIn        int // refresh_in to send; 0 leaves it out

	mu        sync.Mutex
	issuer    string
	live      map[string]bool // refresh token -> still usable
	family    map[string]int  // refresh token -> grant
	revoked   map[int]bool
	graceLeft map[string]int
	next      int
	reuses    int
	requests  []url.Values
	auths     []string // "basic", "post" or "none" per request
	// before, if set, runs first; returning true means it answered.
	before func(w http.ResponseWriter, r *http.Request, form url.Values) bool
}

func newFakeIdP() *fakeIdP {
	return &fakeIdP{clientID: "app", secret: "app-secret-1234", lifetime: 3600, rotate: true,
		live: map[string]bool{}, family: map[string]int{}, revoked: map[int]bool{}, graceLeft: map[string]int{}}
}

// grant creates a new grant and returns its first refresh token.
func (p *fakeIdP) grant() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	rt := fmt.Sprintf("rt-%d-secret", p.next)
	p.live[rt] = true
	p.family[rt] = p.next
	return rt
}

func (p *fakeIdP) stats() (requests, reuses int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests), p.reuses
}

func (p *fakeIdP) lastForm() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.requests) == 0 {
		return nil
	}
	return p.requests[len(p.requests)-1]
}

func (p *fakeIdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/.well-known/openid-configuration" {
		p.mu.Lock()
		iss := p.issuer
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "token_endpoint": iss + "/token",
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		})
		return
	}
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	p.mu.Lock()
	p.requests = append(p.requests, form)
	id, secret, basic := r.BasicAuth()
	how := "none"
	switch {
	case basic:
		how = "basic"
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	case form.Get("client_secret") != "":
		how = "post"
		id, secret = form.Get("client_id"), form.Get("client_secret")
	default:
		id = form.Get("client_id")
	}
	p.auths = append(p.auths, how)
	before := p.before
	p.mu.Unlock()
	if before != nil && before(w, r, form) {
		return
	}
	rec := httptest.NewRecorder()
	p.process(rec, form, id, secret, how)
	p.mu.Lock()
	drop := p.drop > 0
	if drop {
		p.drop--
	}
	p.mu.Unlock()
	if drop {
		// The server did the work, but the answer is lost.
		hijackClose(w)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// hijackClose drops the connection without an answer.
func hijackClose(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	_ = conn.Close()
}

func (p *fakeIdP) process(w http.ResponseWriter, form url.Values, id, secret, how string) {
	if id != p.clientID || secret != p.secret || (p.method != "" && how != p.method) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var rt string
	switch form.Get("grant_type") {
	case "client_credentials":
	case "refresh_token":
		old := form.Get("refresh_token")
		fam, known := p.family[old]
		switch {
		case !known || p.revoked[fam]:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or revoked refresh token")
			return
		case !p.live[old] && p.graceLeft[old] > 0:
			p.graceLeft[old]-- // accepted within the reuse grace period
		case !p.live[old]:
			p.reuses++
			p.revoked[fam] = true
			oauthError(w, http.StatusBadRequest, "invalid_grant", "refresh token reuse detected; grant revoked")
			return
		}
		if p.rotate {
			if p.live[old] && p.grace > 0 {
				p.graceLeft[old] = p.grace
			}
			p.live[old] = false
			p.next++
			rt = fmt.Sprintf("rt-%d-secret", p.next)
			p.live[rt] = true
			p.family[rt] = fam
		}
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	p.next++
	resp := map[string]any{"access_token": fmt.Sprintf("at-%d-secret", p.next), "token_type": "bearer"}
	if p.lifetime != 0 {
		resp["expires_in"] = p.lifetime
	}
	if rt != "" {
		resp["refresh_token"] = rt
	}
	if p.refreshIn != 0 {
		resp["refresh_in"] = p.refreshIn
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// start serves p on a loopback socket for the test's duration.
func (p *fakeIdP) start(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.mu.Lock()
	p.issuer = srv.URL
	p.mu.Unlock()
	return srv
}

// logBuffer collects log output to check warnings (and the absence of
// secrets).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// handlerClient is an *http.Client that serves requests in memory with h
// (for synctest bubbles, where real sockets hang).
func handlerClient(h http.Handler) *http.Client {
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		if err := r.Context().Err(); err != nil {
			return nil, err
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if r.Body != nil {
			_ = r.Body.Close()
		}
		resp := rec.Result()
		resp.Request = r
		return resp, nil
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// mustNew is New for configurations that are valid.
func mustNew(t *testing.T, cfg Config) *Source {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noSecrets fails the test if err's text or body contains one of secrets.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	texts := []string{err.Error()}
	if rerr := asRefreshError(err); rerr != nil {
		texts = append(texts, rerr.Body, rerr.Description, rerr.Code)
	}
	for _, s := range secrets {
		for _, txt := range texts {
			if s != "" && strings.Contains(txt, s) {
				t.Errorf("error text %q contains secret %q", txt, s)
			}
		}
	}
}

var bg = context.Background()
