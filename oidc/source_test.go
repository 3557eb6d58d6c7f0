package oidc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

func asRefreshError(err error) *tokenkeeper.RefreshError {
	var re *tokenkeeper.RefreshError
	if errors.As(err, &re) {
		return re
	}
	return nil
}

func TestNewValidates(t *testing.T) {
	ok := Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}}
	tests := []struct {
		name   string
		modify func(*Config)
		valid  bool
	}{
		{"minimal", func(*Config) {}, true},
		{"issuer only", func(c *Config) { c.Endpoint = oauth2.Endpoint{}; c.Issuer = "https://idp.example" }, true},
		{"client credentials", func(c *Config) { c.Grant = GrantClientCredentials }, true},
		{"grace forever", func(c *Config) { c.ReuseGrace = ReuseAlways }, true},
		{"no client", func(c *Config) { c.ClientID = "" }, false},
		{"no endpoint", func(c *Config) { c.Endpoint = oauth2.Endpoint{} }, false},
		{"relative token URL", func(c *Config) { c.Endpoint.TokenURL = "/token" }, false},
		{"ftp issuer", func(c *Config) { c.Issuer = "ftp://idp.example" }, false},
		{"bad grant", func(c *Config) { c.Grant = "password" }, false},
		{"bad auth style", func(c *Config) { c.Endpoint.AuthStyle = 7 }, false},
		{"negative lifetime", func(c *Config) { c.DefaultLifetime = -time.Second }, false},
		{"lifetime over a year", func(c *Config) { c.DefaultLifetime = MaxLifetime + time.Hour }, false},
		{"negative grace", func(c *Config) { c.ReuseGrace = -1 }, false},
		{"negative body limit", func(c *Config) { c.MaxResponseBytes = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.modify(&cfg)
			_, err := New(cfg)
			if (err == nil) != tt.valid {
				t.Errorf("New: %v, want valid=%v", err, tt.valid)
			}
		})
	}
}

func TestRefreshRotates(t *testing.T) {
	idp := newFakeIdP()
	srv := idp.start(t)
	s := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"}})
	rt := idp.grant()
	cur := &oauth2.Token{RefreshToken: rt}
	for i := range 3 {
		before := time.Now()
		tok, err := s.Refresh(bg, cur)
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if tok.AccessToken == "" || tok.RefreshToken == "" || tok.RefreshToken == cur.RefreshToken {
			t.Fatalf("refresh %d: token %+v did not rotate", i, tok)
		}
		if tok.Type() != "Bearer" {
			t.Errorf("type %q, want Bearer", tok.Type())
		}
		if d := tok.Expiry.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
			t.Errorf("expiry %v after the request, want an hour", d)
		}
		if f := idp.lastForm(); f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != cur.RefreshToken {
			t.Errorf("sent %v", f)
		}
		cur = tok
	}
	// The first refresh token was exchanged: the Source refuses to send it
	// again, so the server never sees a reuse.
	n, _ := idp.stats()
	_, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
	if !errors.Is(err, ErrRefreshTokenSpent) || !asRefreshError(err).Permanent {
		t.Errorf("spent token: %v, want a permanent ErrRefreshTokenSpent", err)
	}
	if n2, reuses := idp.stats(); n2 != n || reuses != 0 {
		t.Errorf("requests %d -> %d, reuses %d: the spent token was sent", n, n2, reuses)
	}
	noSecrets(t, err, rt, idp.secret)
}

func TestRefreshWithoutRefreshToken(t *testing.T) {
	s := mustNew(t, Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}})
	for _, cur := range []*oauth2.Token{nil, {AccessToken: "at"}} {
		_, err := s.Refresh(bg, cur)
		if !errors.Is(err, ErrNoRefreshToken) || !asRefreshError(err).Permanent {
			t.Errorf("Refresh(%v): %v, want a permanent ErrNoRefreshToken", cur, err)
		}
	}
}

// A server that does not rotate answers without a refresh token: the
// keeper keeps the current one, and the Source learns that resending is
// safe.
func TestRefreshWithoutRotation(t *testing.T) {
	idp := newFakeIdP()
	idp.rotate = false
	srv := idp.start(t)
	s := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"}})
	rt := idp.grant()
	tok, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Errorf("refresh token %q, want none (the keeper keeps the current one)", tok.RefreshToken)
	}
	// A lost answer can now be retried: the server does not rotate.
	idp.mu.Lock()
	idp.drop = 1
	idp.mu.Unlock()
	if _, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt}); err != nil {
		t.Errorf("after a lost answer: %v, want a resend to succeed", err)
	}
	if n, _ := idp.stats(); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}
}

func TestClientAuthentication(t *testing.T) {
	tests := []struct {
		name      string
		style     oauth2.AuthStyle
		server    string // method the server accepts ("" = both)
		secret    string // client secret ("" = public client)
		wantAuths []string
		wantErr   bool
	}{
		{"basic", oauth2.AuthStyleInHeader, "", "s3cret-value", []string{"basic", "basic"}, false},
		{"post", oauth2.AuthStyleInParams, "", "s3cret-value", []string{"post", "post"}, false},
		{"auto, server takes basic", oauth2.AuthStyleAutoDetect, "basic", "s3cret-value", []string{"basic", "basic"}, false},
		{"auto, server takes post only", oauth2.AuthStyleAutoDetect, "post", "s3cret-value", []string{"basic", "post", "post"}, false},
		{"basic refused", oauth2.AuthStyleInHeader, "post", "s3cret-value", []string{"basic"}, true},
		{"public client", oauth2.AuthStyleInHeader, "none", "", []string{"none", "none"}, false},
		{"special characters", oauth2.AuthStyleInHeader, "basic", "p@ss:w%rd&=é", []string{"basic", "basic"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newFakeIdP()
			idp.secret = tt.secret
			idp.method = tt.server
			srv := idp.start(t)
			s := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: idp.clientID, ClientSecret: tt.secret,
				Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: tt.style}})
			var err error
			for range 2 {
				if _, err = s.Refresh(bg, nil); err != nil {
					break
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Refresh: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if re := asRefreshError(err); re.Code != "invalid_client" || !re.Permanent {
					t.Errorf("error %v, want permanent invalid_client", err)
				}
				noSecrets(t, err, tt.secret)
			}
			idp.mu.Lock()
			auths := idp.auths
			idp.mu.Unlock()
			if strings.Join(auths, ",") != strings.Join(tt.wantAuths, ",") {
				t.Errorf("authentication sent %v, want %v", auths, tt.wantAuths)
			}
			if f := idp.lastForm(); tt.secret == "" && f.Get("client_id") != idp.clientID {
				t.Errorf("public client sent %v, want client_id", f)
			}
		})
	}
}

func TestRequestParameters(t *testing.T) {
	idp := newFakeIdP()
	srv := idp.start(t)
	s := mustNew(t, Config{
		Grant: GrantClientCredentials, ClientID: idp.clientID, ClientSecret: idp.secret,
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"},
		Scopes:   []string{"read", "write"},
		EndpointParams: url.Values{"audience": {"https://api.example"},
			"grant_type": {"password"}, "client_secret": {"other"}},
	})
	if _, err := s.Refresh(bg, nil); err != nil {
		t.Fatal(err)
	}
	f := idp.lastForm()
	for k, want := range map[string]string{"grant_type": "client_credentials", "scope": "read write",
		"audience": "https://api.example", "client_secret": ""} {
		if got := f.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// errorServer answers every token request with the given status, headers
// and body.
func errorServer(t *testing.T, status int, header map[string]string, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/token"
}

func TestErrorAnswers(t *testing.T) {
	const rt = "rt-secret-value-123"
	jsonCT := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		permanent  bool
		code       string
		retryAfter time.Duration
	}{
		{"invalid_grant", 400, jsonCT, `{"error":"invalid_grant","error_description":"revoked"}`, true, "invalid_grant", 0},
		{"invalid_client", 401, jsonCT, `{"error":"invalid_client"}`, true, "invalid_client", 0},
		{"unauthorized_client", 400, jsonCT, `{"error":"unauthorized_client"}`, true, "unauthorized_client", 0},
		{"bare 401", 401, nil, `Unauthorized`, true, "", 0},
		{"503 with Retry-After seconds", 503, map[string]string{"Retry-After": "7"}, `<html>busy</html>`, false, "", 7 * time.Second},
		{"429 with Retry-After date", 429, map[string]string{"Retry-After": time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)}, ``, false, "", 89 * time.Second},
		{"500 server_error", 500, jsonCT, `{"error":"server_error"}`, false, "server_error", 0},
		{"temporarily_unavailable", 400, jsonCT, `{"error":"temporarily_unavailable"}`, false, "temporarily_unavailable", 0},
		{"400 HTML", 400, map[string]string{"Content-Type": "text/html"}, `<html><body>Bad Request</body></html>`, false, "", 0},
		{"form-encoded error", 400, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, `error=invalid_grant&error_description=bad`, true, "invalid_grant", 0},
		{"redirect not followed", 307, map[string]string{"Location": "/elsewhere"}, ``, false, "", 0},
		{"echoed secret", 400, jsonCT, `{"error":"invalid_request","error_description":"bad token rt-secret-value-123","refresh_token":"rt-secret-value-123"}`, false, "invalid_request", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := errorServer(t, tt.status, tt.header, tt.body)
			s := mustNew(t, Config{ClientID: "app", ClientSecret: "client-secret-xyz", Endpoint: oauth2.Endpoint{TokenURL: u, AuthStyle: oauth2.AuthStyleInHeader}})
			_, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
			re := asRefreshError(err)
			if re == nil {
				t.Fatalf("error %v (%T), want a *tokenkeeper.RefreshError", err, err)
			}
			if re.Permanent != tt.permanent || re.Code != tt.code || re.Status != tt.status {
				t.Errorf("got permanent=%v code=%q status=%d, want %v %q %d (%v)", re.Permanent, re.Code, re.Status,
					tt.permanent, tt.code, tt.status, err)
			}
			if d := re.RetryAfter - tt.retryAfter; d < 0 || d > 2*time.Second {
				t.Errorf("RetryAfter %v, want %v", re.RetryAfter, tt.retryAfter)
			}
			if !errors.Is(err, ErrTokenEndpoint) {
				t.Errorf("error %v does not match ErrTokenEndpoint", err)
			}
			if tokenkeeper.Classify(err).Permanent != tt.permanent {
				t.Errorf("tokenkeeper.Classify disagrees")
			}
			noSecrets(t, err, rt, "client-secret-xyz")
			// An error answer did not use the refresh token: it may be
			// sent again.
			if err := s.admit(keyOf(rt), time.Now()); err != nil {
				t.Errorf("after an error answer the token is refused: %v", err)
			}
		})
	}
}

func keyOf(rt string) [32]byte { return sha256.Sum256([]byte(rt)) }

// TestUnknownOutcome covers the answers after which the server may have
// rotated the refresh token: the Source must not send it again unless the
// reuse grace period allows.
func TestUnknownOutcome(t *testing.T) {
	tests := []struct {
		name     string
		grace    time.Duration
		idpGrace int
		fault    string // "drop": answer lost after rotating; "truncate"; "html"; "huge"
		wantOK   bool
		requests int // requests the server saw during the first Refresh
	}{
		{name: "lost answer, no grace", fault: "drop", requests: 1},
		{name: "truncated answer, no grace", fault: "truncate", requests: 1},
		{name: "HTML 200, no grace", fault: "html", requests: 1},
		{name: "huge answer, no grace", fault: "huge", requests: 1},
		{name: "lost answer, grace", grace: time.Minute, idpGrace: 1, fault: "drop", wantOK: true, requests: 2},
		{name: "lost answer, ReuseAlways", grace: ReuseAlways, idpGrace: 1, fault: "drop", wantOK: true, requests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newFakeIdP()
			idp.grace = tt.idpGrace
			var faults atomic.Int32
			faults.Store(1)
			switch tt.fault {
			case "drop":
				idp.drop = 1
			default:
				idp.before = func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
					if faults.Add(-1) < 0 {
						return false
					}
					// Rotate for real, then spoil the answer.
					idp.process(httptest.NewRecorder(), form, idp.clientID, idp.secret, "basic")
					switch tt.fault {
					case "truncate":
						w.Header().Set("Content-Length", "200")
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(`{"access_token":"at-x","refr`))
					case "html":
						w.Header().Set("Content-Type", "text/html")
						_, _ = w.Write([]byte(`<!DOCTYPE html><html><body>Welcome to the proxy</body></html>`))
					case "huge":
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(`{"access_token":"at-x","pad":"` + strings.Repeat("x", 2<<20) + `"}`))
					}
					return true
				}
			}
			srv := idp.start(t)
			s := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret, ReuseGrace: tt.grace,
				Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader}})
			rt := idp.grant()
			tok, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
			n, reuses := idp.stats()
			if n != tt.requests {
				t.Errorf("server saw %d requests, want %d", n, tt.requests)
			}
			if reuses != 0 {
				t.Errorf("server detected %d reuses", reuses)
			}
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Refresh: %v, want success after a resend within the grace period", err)
				}
				if tok.RefreshToken == "" || tok.RefreshToken == rt {
					t.Errorf("no rotated refresh token")
				}
				return
			}
			re := asRefreshError(err)
			if re == nil || !re.Permanent || !errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("Refresh: %v, want a permanent ErrOutcomeUnknown", err)
			}
			noSecrets(t, err, rt, idp.secret, "at-x")
			// The keeper would not call again after a permanent error, but
			// if anything did, the token stays unsent.
			_, err = s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
			if !errors.Is(err, ErrOutcomeUnknown) {
				t.Errorf("second Refresh: %v, want ErrOutcomeUnknown", err)
			}
			if n2, _ := idp.stats(); n2 != n {
				t.Errorf("the refresh token was sent again (%d requests)", n2)
			}
		})
	}
}

// Within the grace period the keeper's later retries may resend; after it,
// the Source refuses.
func TestUnknownOutcomeGraceExpires(t *testing.T) {
	idp := newFakeIdP()
	idp.drop = 2 // the first request and its immediate resend are lost
	idp.grace = 5
	srv := idp.start(t)
	s := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret, ReuseGrace: time.Hour,
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader}})
	rt := idp.grant()
	_, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
	if re := asRefreshError(err); re == nil || re.Permanent {
		t.Fatalf("Refresh: %v, want a transient error (the grace period allows a retry)", err)
	}
	if n, _ := idp.stats(); n != 2 {
		t.Errorf("requests = %d, want 2 (one immediate resend)", n)
	}
	// The keeper's retry, still in the grace period, succeeds.
	if _, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatalf("retry within grace: %v", err)
	}
	// Past the grace period nothing is sent.
	key := keyOf(rt)
	s.mu.Lock()
	s.sent[key] = &sentRecord{unknown: time.Now().Add(-2 * time.Hour)}
	s.mu.Unlock()
	n, _ := idp.stats()
	_, err = s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
	if !errors.Is(err, ErrOutcomeUnknown) || !asRefreshError(err).Permanent {
		t.Errorf("after the grace period: %v, want a permanent ErrOutcomeUnknown", err)
	}
	if n2, _ := idp.stats(); n2 != n {
		t.Errorf("sent after the grace period")
	}
}

// A request that never left the client may be repeated.
func TestNotSentIsTransient(t *testing.T) {
	idp := newFakeIdP()
	srv := idp.start(t)
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, errors.New("connection refused (simulated)")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	s := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret, HTTPClient: &http.Client{Transport: tr},
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader}})
	rt := idp.grant()
	_, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt})
	if re := asRefreshError(err); re == nil || re.Permanent || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Refresh: %v, want a transient network error", err)
	}
	if _, err := s.Refresh(bg, &oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if n, reuses := idp.stats(); n != 1 || reuses != 0 {
		t.Errorf("server saw %d requests, %d reuses; want 1, 0", n, reuses)
	}
}

// A refresh that times out after sending has an unknown outcome.
func TestTimeoutAfterSending(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	s := mustNew(t, Config{ClientID: "app", ClientSecret: "secret-123", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInHeader}})
	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	_, err := s.Refresh(ctx, &oauth2.Token{RefreshToken: "rt-secret-abc"})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Refresh: %v, want ErrOutcomeUnknown wrapping the deadline", err)
	}
	noSecrets(t, err, "rt-secret-abc", "secret-123")

	// For client credentials a timeout is just transient.
	cc := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: "app", ClientSecret: "secret-123", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}})
	ctx2, cancel2 := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel2()
	_, err = cc.Refresh(ctx2, nil)
	if re := asRefreshError(err); re == nil || re.Permanent || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("client credentials: %v, want a transient timeout", err)
	}
}

func TestClientCredentialsFaultsAreTransient(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		ct        string
		permanent bool
		sentinel  error
	}{
		{"html", `<html>maintenance</html>`, "text/html", false, ErrMalformedResponse},
		{"no access token", `{"token_type":"bearer"}`, "application/json", false, ErrMissingAccessToken},
		{"mac token", `{"access_token":"cc-secret-1","token_type":"mac"}`, "application/json", true, ErrUnsupportedTokenType},
		{"huge", `{"access_token":"` + strings.Repeat("a", 3<<20) + `"}`, "application/json", false, ErrResponseTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := errorServer(t, 200, map[string]string{"Content-Type": tt.ct}, tt.body)
			s := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: "app", ClientSecret: "cs-123456",
				Endpoint: oauth2.Endpoint{TokenURL: u}})
			_, err := s.Refresh(bg, nil)
			re := asRefreshError(err)
			if re == nil || re.Permanent != tt.permanent || !errors.Is(err, tt.sentinel) {
				t.Errorf("Refresh: %v, want permanent=%v and %v", err, tt.permanent, tt.sentinel)
			}
			noSecrets(t, err, "cc-secret-1", "cs-123456")
		})
	}
}

func TestDiscovery(t *testing.T) {
	idp := newFakeIdP()
	var wellKnown atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
			wellKnown.Add(1)
		}
		idp.ServeHTTP(w, r)
	}))
	defer srv.Close()
	idp.mu.Lock()
	idp.issuer = srv.URL
	idp.mu.Unlock()

	p, err := Discover(bg, nil, srv.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	if ep := p.Endpoint(); ep.TokenURL != srv.URL+"/token" || ep.AuthStyle != oauth2.AuthStyleInHeader {
		t.Errorf("endpoint %+v", ep)
	}

	s := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: idp.clientID, ClientSecret: idp.secret, Issuer: srv.URL})
	ctx := context.WithValue(bg, oauth2.HTTPClient, srv.Client())
	for range 3 {
		if _, err := s.Refresh(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := wellKnown.Load(); n != 2 { // one for Discover above, one for the Source
		t.Errorf("metadata fetched %d times, want 2 (cached)", n)
	}
}

func TestDiscoveryErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		header    map[string]string
		permanent bool
	}{
		{"404", 404, `not found`, nil, true},
		{"503", 503, `busy`, map[string]string{"Retry-After": "3"}, false},
		{"429", 429, ``, nil, false},
		{"not JSON", 200, `<html></html>`, nil, true},
		{"issuer mismatch", 200, `{"issuer":"https://evil.example","token_endpoint":"https://evil.example/token"}`, nil, true},
		{"no token endpoint", 200, `{"issuer":"ISSUER"}`, nil, true},
		{"relative token endpoint", 200, `{"issuer":"ISSUER","token_endpoint":"/token"}`, nil, true},
		{"huge", 200, `{"issuer":"ISSUER","x":"` + strings.Repeat("x", 2<<20) + `"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(strings.ReplaceAll(tt.body, "ISSUER", srv.URL)))
			}))
			defer srv.Close()
			s := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: "app", Issuer: srv.URL})
			_, err := s.Refresh(bg, nil)
			re := asRefreshError(err)
			if re == nil || re.Permanent != tt.permanent || !errors.Is(err, ErrDiscovery) {
				t.Errorf("Refresh: %v, want permanent=%v and ErrDiscovery", err, tt.permanent)
			}
		})
	}
	// Unreachable issuer: transient.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, err = Discover(bg, nil, "http://"+addr)
	if re := asRefreshError(err); re == nil || re.Permanent {
		t.Errorf("unreachable issuer: %v, want transient", err)
	}
	if _, err := Discover(bg, nil, "not a url"); err == nil {
		t.Error("Discover accepted a bad issuer")
	}
}

func TestProviderEndpointStyle(t *testing.T) {
	tests := []struct {
		methods []string
		want    oauth2.AuthStyle
	}{
		{nil, oauth2.AuthStyleInHeader},
		{[]string{"client_secret_post", "client_secret_basic"}, oauth2.AuthStyleInHeader},
		{[]string{"client_secret_post"}, oauth2.AuthStyleInParams},
		{[]string{"private_key_jwt"}, oauth2.AuthStyleAutoDetect},
	}
	for _, tt := range tests {
		p := &Provider{TokenEndpoint: "https://idp.example/token", TokenEndpointAuthMethods: tt.methods}
		if got := p.Endpoint().AuthStyle; got != tt.want {
			t.Errorf("methods %v: style %v, want %v", tt.methods, got, tt.want)
		}
	}
}

// A configured AuthStyle wins over the discovered one.
func TestDiscoveryKeepsConfiguredStyle(t *testing.T) {
	idp := newFakeIdP()
	idp.method = "post"
	srv := idp.start(t)
	s := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: idp.clientID, ClientSecret: idp.secret,
		Issuer: srv.URL, Endpoint: oauth2.Endpoint{AuthStyle: oauth2.AuthStyleInParams}})
	if _, err := s.Refresh(bg, nil); err != nil {
		t.Fatal(err)
	}
}

func TestSourceStringHasNoSecret(t *testing.T) {
	s := mustNew(t, Config{ClientID: "app", ClientSecret: "very-secret-value", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}})
	cfg := Config{ClientID: "app", ClientSecret: "very-secret-value"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{s, cfg, &cfg} {
			if out := fmt.Sprintf(f, v); strings.Contains(out, "very-secret-value") || !strings.Contains(out, "app") {
				t.Errorf("%s prints %s", f, out)
			}
		}
	}
}
