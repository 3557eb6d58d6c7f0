package tokenkeeper_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// seqSource issues tok-1, tok-2, ... valid for an hour. If gate is not nil,
// each refresh first waits for a value from it. If fail is set, refreshes
// fail with it.
type seqSource struct {
	n    atomic.Int32
	gate chan struct{}
	fail error
}

func (s *seqSource) Refresh(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.fail != nil {
		return nil, s.fail
	}
	n := s.n.Add(1)
	return &oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", n), Expiry: time.Now().Add(time.Hour)}, nil
}

// handlerTransport serves requests in memory with an http.Handler (a real
// socket inside a synctest bubble would hang). Like a real transport it
// closes request bodies. It records every Authorization header it saw and
// tracks the closing of the response bodies it returns.
type handlerTransport struct {
	h http.Handler

	mu     sync.Mutex
	auths  []string
	bodies []string
	resps  []*trackedBody
}

func (ht *handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	ht.mu.Lock()
	ht.auths = append(ht.auths, req.Header.Get("Authorization"))
	ht.bodies = append(ht.bodies, string(body))
	ht.mu.Unlock()
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, req)
	resp := rec.Result()
	tb := &trackedBody{ReadCloser: resp.Body}
	resp.Body = tb
	resp.Request = req
	ht.mu.Lock()
	ht.resps = append(ht.resps, tb)
	ht.mu.Unlock()
	return resp, nil
}

func (ht *handlerTransport) seen() (auths, bodies []string) {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	return append([]string(nil), ht.auths...), append([]string(nil), ht.bodies...)
}

// unclosedResponses counts the response bodies returned before the last one
// that were not closed (the last one belongs to the caller).
func (ht *handlerTransport) unclosedResponses() int {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	n := 0
	for i, r := range ht.resps {
		if i < len(ht.resps)-1 && !r.closed.Load() {
			n++
		}
	}
	return n
}

// trackedBody records whether it was closed.
type trackedBody struct {
	io.ReadCloser
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	if b.ReadCloser == nil {
		return nil
	}
	return b.ReadCloser.Close()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// newKept returns a keeper holding token "api" with initial value tok-0
// (valid for an hour) and src as its Source.
func newKept(t *testing.T, src tokenkeeper.Source, initial *oauth2.Token) (*tokenkeeper.Keeper, *tokenkeeper.Handle) {
	t.Helper()
	k, err := tokenkeeper.New(tokenkeeper.Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	if initial == nil {
		initial = &oauth2.Token{AccessToken: "tok-0", Expiry: time.Now().Add(time.Hour)}
	}
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "api", Source: src, Token: initial})
	if err != nil {
		t.Fatal(err)
	}
	return k, h
}

// rejectTokens answers with status (and challenge, if set) to requests
// whose Authorization header is in reject, and 200 "ok" otherwise.
func rejectTokens(status int, challenge string, reject ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, a := range reject {
			if r.Header.Get("Authorization") == a {
				if challenge != "" {
					w.Header().Set("WWW-Authenticate", challenge)
				}
				w.WriteHeader(status)
				_, _ = io.WriteString(w, "rejected")
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
}

func TestTransportSetsAuthorization(t *testing.T) {
	tests := []struct {
		tokenType string
		want      string
	}{
		{"", "Bearer tok-0"},
		{"bearer", "Bearer tok-0"},
		{"Bearer", "Bearer tok-0"},
		{"mac", "MAC tok-0"},
		{"DPoP", "DPoP tok-0"},
	}
	for _, tt := range tests {
		t.Run(tt.tokenType, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, h := newKept(t, &seqSource{}, &oauth2.Token{AccessToken: "tok-0", TokenType: tt.tokenType, Expiry: time.Now().Add(time.Hour)})
				api := &handlerTransport{h: rejectTokens(http.StatusUnauthorized, "")}
				req, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
				req.Header.Set("Authorization", "Basic caller-value")
				req.Header.Set("X-Caller", "kept")
				resp, err := (&tokenkeeper.Transport{Handle: h, Base: api}).RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				auths, _ := api.seen()
				if len(auths) != 1 || auths[0] != tt.want {
					t.Errorf("server saw Authorization %q, want [%q]", auths, tt.want)
				}
				if got := req.Header.Get("Authorization"); got != "Basic caller-value" {
					t.Errorf("caller's request was modified: Authorization = %q", got)
				}
			})
		})
	}
}

func TestTransportRejection(t *testing.T) {
	const payload = `{"n":1}`
	type bodyKind int
	const (
		noBody bodyKind = iota
		replayable
		oneShot    // Body without GetBody
		getBodyErr // GetBody fails
	)
	tests := []struct {
		name      string
		status    int
		challenge string
		reject    []string // Authorization values the API rejects
		body      bodyKind
		// want
		status1   int      // status the caller gets
		auths     []string // Authorization headers the API saw
		refreshes int32
		next      string // Authorization of the following request
	}{
		{
			name: "401 retried once without body", status: 401, reject: []string{"Bearer tok-0"},
			status1: 200, auths: []string{"Bearer tok-0", "Bearer tok-1"}, refreshes: 1, next: "Bearer tok-1",
		},
		{
			name: "401 retried with replayed body", status: 401, reject: []string{"Bearer tok-0"}, body: replayable,
			status1: 200, auths: []string{"Bearer tok-0", "Bearer tok-1"}, refreshes: 1, next: "Bearer tok-1",
		},
		{
			name: "401 with one-shot body returned", status: 401, reject: []string{"Bearer tok-0"}, body: oneShot,
			status1: 401, auths: []string{"Bearer tok-0"}, refreshes: 1, next: "Bearer tok-1",
		},
		{
			name: "401 when GetBody fails returned", status: 401, reject: []string{"Bearer tok-0"}, body: getBodyErr,
			status1: 401, auths: []string{"Bearer tok-0"}, refreshes: 1, next: "Bearer tok-1",
		},
		{
			name: "403 invalid_token challenge retried", status: 403, reject: []string{"Bearer tok-0"},
			challenge: `Bearer realm="api", error="invalid_token", error_description="expired"`,
			status1:   200, auths: []string{"Bearer tok-0", "Bearer tok-1"}, refreshes: 1, next: "Bearer tok-1",
		},
		{
			name: "400 unquoted invalid_token challenge retried", status: 400, reject: []string{"Bearer tok-0"},
			challenge: `Bearer error=invalid_token`,
			status1:   200, auths: []string{"Bearer tok-0", "Bearer tok-1"}, refreshes: 1, next: "Bearer tok-1",
		},
		{
			name: "403 insufficient_scope not retried", status: 403, reject: []string{"Bearer tok-0"},
			challenge: `Bearer error="insufficient_scope", error_description="invalid_token is not the error"`,
			status1:   403, auths: []string{"Bearer tok-0"}, refreshes: 0, next: "Bearer tok-0",
		},
		{
			name: "500 not retried", status: 500, reject: []string{"Bearer tok-0"},
			status1: 500, auths: []string{"Bearer tok-0"}, refreshes: 0, next: "Bearer tok-0",
		},
		{
			name: "second 401 returned, no loop", status: 401, reject: []string{"Bearer tok-0", "Bearer tok-1"},
			status1: 401, auths: []string{"Bearer tok-0", "Bearer tok-1"}, refreshes: 1, next: "Bearer tok-1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := &seqSource{}
				_, h := newKept(t, src, nil)
				api := &handlerTransport{h: rejectTokens(tt.status, tt.challenge, tt.reject...)}
				client := tokenkeeper.NewClient(h, api)

				var bodies []*trackedBody
				newBody := func() io.ReadCloser {
					b := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader(payload))}
					bodies = append(bodies, b)
					return b
				}
				req, _ := http.NewRequest(http.MethodPost, "https://api.example/v1", nil)
				switch tt.body {
				case replayable:
					req.Body = newBody()
					req.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
				case oneShot:
					req.Body = newBody()
				case getBodyErr:
					req.Body = newBody()
					req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("gone") }
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != tt.status1 {
					t.Errorf("status = %d (%s), want %d", resp.StatusCode, got, tt.status1)
				}
				auths, sent := api.seen()
				if strings.Join(auths, "|") != strings.Join(tt.auths, "|") {
					t.Errorf("API saw %q, want %q", auths, tt.auths)
				}
				if tt.body == replayable {
					for i, b := range sent {
						if b != payload {
							t.Errorf("attempt %d sent body %q, want %q", i, b, payload)
						}
					}
				}
				for i, b := range bodies {
					if !b.closed.Load() {
						t.Errorf("request body %d not closed", i)
					}
				}
				if n := api.unclosedResponses(); n != 0 {
					t.Errorf("%d intermediate responses not closed", n)
				}

				synctest.Wait()
				if n := src.n.Load(); n != tt.refreshes {
					t.Errorf("refreshes = %d, want %d", n, tt.refreshes)
				}

				// The next request shows which token is current.
				req2, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
				resp2, err := client.Do(req2)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp2.Body.Close()
				auths, _ = api.seen()
				if len(auths) <= len(tt.auths) {
					t.Fatalf("API saw %q: the next request did not arrive where expected", auths)
				}
				if next := auths[len(tt.auths)]; next != tt.next {
					t.Errorf("next request sent %q, want %q", next, tt.next)
				}
			})
		})
	}
}

// Many requests rejected with the same token cause one refresh, and each is
// retried once with the new token.
func TestTransportConcurrentRejectionsRefreshOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50
		src := &seqSource{}
		_, h := newKept(t, src, nil)
		// The API holds every request with tok-0 until all n have arrived,
		// then rejects them together.
		var arrived atomic.Int32
		all := make(chan struct{})
		api := &handlerTransport{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer tok-0" {
				if arrived.Add(1) == n {
					close(all)
				}
				<-all
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, "ok")
		})}
		client := tokenkeeper.NewClient(h, api)
		statuses := make(chan int, n)
		for range n {
			go func() {
				resp, err := client.Get("https://api.example/v1")
				if err != nil {
					t.Error(err)
					statuses <- 0
					return
				}
				_ = resp.Body.Close()
				statuses <- resp.StatusCode
			}()
		}
		for range n {
			if s := <-statuses; s != http.StatusOK {
				t.Errorf("status %d, want 200", s)
			}
		}
		if got := src.n.Load(); got != 1 {
			t.Errorf("refreshes = %d, want 1", got)
		}
		auths, _ := api.seen()
		count := map[string]int{}
		for _, a := range auths {
			count[a]++
		}
		if count["Bearer tok-0"] != n || count["Bearer tok-1"] != n || len(count) != 2 {
			t.Errorf("API saw %v, want %d of each of tok-0 and tok-1", count, n)
		}
	})
}

// A request holding a valid token never waits, even while a refresh of that
// token is in flight.
func TestTransportDoesNotWaitForRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &seqSource{gate: make(chan struct{})}
		_, h := newKept(t, src, nil)
		api := &handlerTransport{h: rejectTokens(http.StatusUnauthorized, "")}
		client := tokenkeeper.NewClient(h, api)

		refreshed := make(chan struct{})
		go func() {
			defer close(refreshed)
			if _, err := h.Refresh(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		synctest.Wait() // the refresh is blocked in the source
		start := time.Now()
		resp, err := client.Get("https://api.example/v1")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if d := time.Since(start); d != 0 {
			t.Errorf("request took %v of virtual time, want 0", d)
		}
		select {
		case <-refreshed:
			t.Fatal("refresh finished before the gate opened")
		default:
		}
		src.gate <- struct{}{}
		<-refreshed
		auths, _ := api.seen()
		if len(auths) != 1 || auths[0] != "Bearer tok-0" {
			t.Errorf("API saw %q, want [Bearer tok-0]", auths)
		}
	})
}

func TestTransportErrors(t *testing.T) {
	permanent := tokenkeeper.Permanent(errors.New("grant revoked"))
	tests := []struct {
		name    string
		run     func(t *testing.T) (*http.Response, error, *trackedBody)
		wantErr error // matched with errors.Is; nil: any non-nil error
	}{
		{
			name: "no handle",
			run: func(t *testing.T) (*http.Response, error, *trackedBody) {
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				req, _ := http.NewRequest(http.MethodPost, "https://api.example/", body)
				resp, err := (&tokenkeeper.Transport{}).RoundTrip(req)
				return resp, err, body
			},
		},
		{
			name:    "reauth required, no token",
			wantErr: tokenkeeper.ErrReauthRequired,
			run: func(t *testing.T) (*http.Response, error, *trackedBody) {
				_, h := newKept(t, &seqSource{fail: permanent}, &oauth2.Token{RefreshToken: "rt"})
				if _, err := h.Refresh(context.Background()); !errors.Is(err, tokenkeeper.ErrReauthRequired) {
					t.Fatalf("Refresh: %v, want ErrReauthRequired", err)
				}
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				req, _ := http.NewRequest(http.MethodPost, "https://api.example/", body)
				resp, err := tokenkeeper.NewClient(h, &handlerTransport{h: rejectTokens(401, "")}).Do(req)
				return resp, err, body
			},
		},
		{
			name:    "keeper closed, no token",
			wantErr: tokenkeeper.ErrClosed,
			run: func(t *testing.T) (*http.Response, error, *trackedBody) {
				// The source never answers, so no token can exist before Close.
				k, h := newKept(t, &seqSource{gate: make(chan struct{})}, &oauth2.Token{RefreshToken: "rt"})
				_ = k.Close()
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				req, _ := http.NewRequest(http.MethodPost, "https://api.example/", body)
				resp, err := tokenkeeper.NewClient(h, &handlerTransport{h: rejectTokens(401, "")}).Do(req)
				return resp, err, body
			},
		},
		{
			name:    "caller gives up waiting",
			wantErr: context.DeadlineExceeded,
			run: func(t *testing.T) (*http.Response, error, *trackedBody) {
				src := &seqSource{gate: make(chan struct{})}
				_, h := newKept(t, src, &oauth2.Token{RefreshToken: "rt"})
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.example/", body)
				resp, err := tokenkeeper.NewClient(h, &handlerTransport{h: rejectTokens(401, "")}).Do(req)
				close(src.gate)
				return resp, err, body
			},
		},
		{
			name:    "base fails",
			wantErr: errBase,
			run: func(t *testing.T) (*http.Response, error, *trackedBody) {
				_, h := newKept(t, &seqSource{}, nil)
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					_ = r.Body.Close()
					return nil, errBase
				})
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				req, _ := http.NewRequest(http.MethodPost, "https://api.example/", body)
				resp, err := tokenkeeper.NewClient(h, base).Do(req)
				return resp, err, body
			},
		},
		{
			name:    "rejected, then the refresh fails for good",
			wantErr: tokenkeeper.ErrReauthRequired,
			run: func(t *testing.T) (*http.Response, error, *trackedBody) {
				_, h := newKept(t, &seqSource{fail: permanent}, nil)
				api := &handlerTransport{h: rejectTokens(401, "", "Bearer tok-0")}
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				var retryBody *trackedBody
				req, _ := http.NewRequest(http.MethodPost, "https://api.example/", body)
				req.GetBody = func() (io.ReadCloser, error) {
					retryBody = &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
					return retryBody, nil
				}
				resp, err := tokenkeeper.NewClient(h, api).Do(req)
				if retryBody == nil || !retryBody.closed.Load() {
					t.Error("retry body not closed")
				}
				if n := api.unclosedResponses(); n != 0 {
					t.Errorf("the 401 response was not closed")
				}
				if len(api.resps) == 1 && !api.resps[0].closed.Load() {
					t.Errorf("the 401 response was not closed")
				}
				return resp, err, body
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				resp, err, body := tt.run(t)
				if err == nil {
					_ = resp.Body.Close()
					t.Fatalf("got status %d, want an error", resp.StatusCode)
				}
				if resp != nil {
					t.Errorf("got a response with the error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %v, want %v", err, tt.wantErr)
				}
				if !body.closed.Load() {
					t.Error("request body not closed")
				}
			})
		})
	}
}

var errBase = errors.New("base transport failed")

// The token values never show in a Transport's errors.
func TestTransportErrorHasNoSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, h := newKept(t, &seqSource{fail: tokenkeeper.Permanent(errors.New("revoked"))},
			&oauth2.Token{AccessToken: "expired-secret-access", RefreshToken: "secret-refresh", Expiry: time.Now().Add(time.Second)})
		time.Sleep(2 * time.Second)
		_, err := tokenkeeper.NewClient(h, &handlerTransport{h: rejectTokens(401, "")}).Get("https://api.example/")
		if err == nil {
			t.Fatal("want an error")
		}
		for _, s := range []string{"secret-access", "secret-refresh"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains a secret", err)
			}
		}
	})
}

// A Handle is an oauth2.TokenSource: oauth2.NewClient and
// oauth2.ReuseTokenSource take it unchanged.
func TestHandleAsOAuth2TokenSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &seqSource{}
		_, h := newKept(t, src, &oauth2.Token{RefreshToken: "rt"}) // no access token yet
		api := &handlerTransport{h: rejectTokens(401, "")}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: api})
		var ts oauth2.TokenSource = oauth2.ReuseTokenSource(nil, h)
		client := oauth2.NewClient(ctx, ts)
		for range 3 {
			resp, err := client.Get("https://api.example/")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
		}
		auths, _ := api.seen()
		if want := "Bearer tok-1|Bearer tok-1|Bearer tok-1"; strings.Join(auths, "|") != want {
			t.Errorf("API saw %q, want %q", auths, want)
		}
		if n := src.n.Load(); n != 1 {
			t.Errorf("refreshes = %d, want 1", n)
		}
	})
}

// FromTokenSource turns x/oauth2's client credentials flow into a Source
// that the keeper renews in the background.
func TestFromTokenSourceClientCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var issued atomic.Int32
		idp := &handlerTransport{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
				http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
				return
			}
			if id, secret, ok := r.BasicAuth(); !ok || id != "svc" || secret != "s3cret" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
				return
			}
			n := issued.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"cc-%d","token_type":"bearer","expires_in":3600}`, n)
		})}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: idp})
		cc := &clientcredentials.Config{ClientID: "svc", ClientSecret: "s3cret", TokenURL: "https://idp.example/token",
			AuthStyle: oauth2.AuthStyleInHeader}

		k, err := tokenkeeper.New(tokenkeeper.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		h, err := k.Add(tokenkeeper.TokenConfig{Name: "svc", Source: tokenkeeper.FromTokenSource(cc.TokenSource(ctx))})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := h.TokenContext(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "cc-1" {
			t.Fatalf("first token %q, want cc-1", tok.AccessToken)
		}
		// Keep using it for two hours: the keeper renews it ahead of
		// expiry, and every fetch finds a valid token at once.
		for range 120 {
			time.Sleep(time.Minute)
			start := time.Now()
			if _, err := h.TokenContext(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("fetch waited %v", d)
			}
		}
		if n := issued.Load(); n < 3 {
			t.Errorf("tokens issued = %d, want at least 3 (renewed in the background)", n)
		}

		// A refused client is a permanent failure: re-authentication.
		bad := &clientcredentials.Config{ClientID: "svc", ClientSecret: "wrong", TokenURL: "https://idp.example/token",
			AuthStyle: oauth2.AuthStyleInHeader}
		h2, err := k.Add(tokenkeeper.TokenConfig{Name: "bad", Source: tokenkeeper.FromTokenSource(bad.TokenSource(ctx))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h2.TokenContext(context.Background()); !errors.Is(err, tokenkeeper.ErrReauthRequired) {
			t.Errorf("bad client: %v, want ErrReauthRequired", err)
		} else if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error %q contains the client secret", err)
		}
	})
}

func TestFromTokenSourceNil(t *testing.T) {
	_, err := tokenkeeper.FromTokenSource(nil).Refresh(context.Background(), nil)
	if re := tokenkeeper.Classify(err); re == nil || !re.Permanent {
		t.Errorf("nil TokenSource: %v, want a permanent error", err)
	}
}

// ExampleNewClient calls an API through the interceptor.
func ExampleNewClient() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.Header.Get("Authorization"))
	}))
	defer api.Close()

	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{
		Name: "api",
		Source: tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "fresh", Expiry: time.Now().Add(time.Hour)}, nil
		}),
		Token: &oauth2.Token{AccessToken: "kept", TokenType: "bearer", Expiry: time.Now().Add(time.Hour)},
	})
	if err != nil {
		panic(err)
	}

	client := tokenkeeper.NewClient(h, nil)
	resp, err := client.Get(api.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: hello, Bearer kept
}

// ExampleTransport shows the retry after the API rejects a token: the
// keeper refreshes it once and the request is sent again.
func ExampleTransport() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer second" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "accepted %s", body)
	}))
	defer api.Close()

	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{
		Name: "api",
		Source: tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "second", Expiry: time.Now().Add(time.Hour)}, nil
		}),
		Token: &oauth2.Token{AccessToken: "first", Expiry: time.Now().Add(time.Hour)},
	})
	if err != nil {
		panic(err)
	}

	client := &http.Client{Transport: &tokenkeeper.Transport{Handle: h, Base: http.DefaultTransport}}
	// strings.Reader bodies can be replayed (http.NewRequest sets GetBody).
	req, _ := http.NewRequest(http.MethodPost, api.URL, strings.NewReader(`{"order":42}`))
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 accepted {"order":42}
}

// ExampleFromTokenSource keeps a token from an existing oauth2.TokenSource
// (here x/oauth2's client credentials flow) fresh in the background.
func ExampleFromTokenSource() {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"from-idp","token_type":"bearer","expires_in":3600}`)
	}))
	defer idp.Close()

	cc := &clientcredentials.Config{ClientID: "svc", ClientSecret: "s3cret", TokenURL: idp.URL}
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{
		Name:   "svc",
		Source: tokenkeeper.FromTokenSource(cc.TokenSource(context.Background())),
	})
	if err != nil {
		panic(err)
	}
	tok, err := h.TokenContext(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.Type(), tok.AccessToken)
	// Output: Bearer from-idp
}

// ExampleHandle_oauth2 hands a kept token to code written for x/oauth2: a
// Handle is an oauth2.TokenSource.
func ExampleHandle_oauth2() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Authorization"))
	}))
	defer api.Close()

	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{
		Name: "api",
		Source: tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "renewed", Expiry: time.Now().Add(time.Hour)}, nil
		}),
		Token: &oauth2.Token{AccessToken: "kept", Expiry: time.Now().Add(time.Hour)},
	})
	if err != nil {
		panic(err)
	}

	var ts oauth2.TokenSource = h
	resp, err := oauth2.NewClient(context.Background(), ts).Get(api.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: Bearer kept
}
