package devissuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func startTest(t *testing.T, cfg Config) *Issuer {
	t.Helper()
	if cfg.Clients == nil {
		cfg.Clients = []Client{{ID: "app", Secret: "s3cret", AccessTTL: time.Minute}, {ID: "public"}}
	}
	i, err := Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { i.Close() })
	return i
}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func post(t *testing.T, u string, form url.Values, basicID, basicSecret string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &a.body)
	return a
}

func refresh(t *testing.T, i *Issuer, rt string) answer {
	return post(t, i.URL()+PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", "s3cret")
}

func TestRotationAndReuseDetection(t *testing.T) {
	i := startTest(t, Config{})
	rt0, gid, err := i.Issue(GrantOptions{ClientID: "app", Scopes: []string{"openid", "api"}, AccessTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := refresh(t, i, rt0)
	if a.status != 200 {
		t.Fatalf("refresh: %d %v", a.status, a.body)
	}
	rt1, _ := a.body["refresh_token"].(string)
	if rt1 == "" || rt1 == rt0 {
		t.Fatalf("refresh token not rotated: %q", rt1)
	}
	if a.body["expires_in"].(float64) != 3 || a.body["token_type"] != "Bearer" || a.body["scope"] != "openid api" {
		t.Errorf("answer = %v", a.body)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Error("no Cache-Control: no-store")
	}
	at := a.body["access_token"].(string)
	if in := i.Introspect(at); !in.Active || in.GrantID != gid || in.Subject != "demo-user" {
		t.Errorf("introspect = %+v", in)
	}
	a2 := refresh(t, i, rt1)
	if a2.status != 200 {
		t.Fatalf("second refresh: %d %v", a2.status, a2.body)
	}
	// Reuse of rt0 revokes the grant, including the newest tokens.
	a3 := refresh(t, i, rt0)
	if a3.status != 400 || a3.body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", a3.status, a3.body)
	}
	if in := i.Introspect(a2.body["access_token"].(string)); in.Active {
		t.Error("access token still active after reuse revoked the grant")
	}
	if a4 := refresh(t, i, a2.body["refresh_token"].(string)); a4.body["error"] != "invalid_grant" {
		t.Errorf("newest refresh token still works after revocation: %v", a4.body)
	}
	st := i.Stats()
	if st.ReuseDetected != 1 || st.GrantsRevoked != 1 || st.Refreshes != 2 || st.Grants != 1 {
		t.Errorf("stats = %+v", st)
	}
	gs, ok := i.Grant(gid)
	if !ok || !gs.Revoked || gs.Refreshes != 2 || gs.AccessTTL != 3*time.Second {
		t.Errorf("grant = %+v", gs)
	}
}

func TestIDTokenVerifiesWithJWKS(t *testing.T) {
	i := startTest(t, Config{})
	rt, _, _ := i.Issue(GrantOptions{ClientID: "app", Scopes: []string{"openid"}})
	a := refresh(t, i, rt)
	idt, _ := a.body["id_token"].(string)
	parts := strings.Split(idt, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q", idt)
	}
	resp, err := http.Get(i.URL() + PathJWKS)
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct{ X, Y, Kid string }
	}
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	dec := func(s string) []byte { b, _ := base64.RawURLEncoding.DecodeString(s); return b }
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(),
		X: new(big.Int).SetBytes(dec(jwks.Keys[0].X)), Y: new(big.Int).SetBytes(dec(jwks.Keys[0].Y))}
	sig := dec(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("id_token signature does not verify")
	}
	var claims map[string]any
	json.Unmarshal(dec(parts[1]), &claims)
	if claims["iss"] != i.URL() || claims["aud"] != "app" || claims["sub"] != "demo-user" {
		t.Errorf("claims = %v", claims)
	}
}

func TestDiscovery(t *testing.T) {
	i := startTest(t, Config{})
	resp, err := http.Get(i.URL() + PathDiscovery)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	json.NewDecoder(resp.Body).Decode(&d)
	if d["issuer"] != i.URL() || d["token_endpoint"] != i.URL()+PathToken {
		t.Errorf("discovery = %v", d)
	}
	// Without a configured URL the Host header names the issuer.
	i2, _ := New(Config{})
	req, _ := http.NewRequest("GET", "http://example.test"+PathDiscovery, nil)
	rec := &recorder{h: http.Header{}}
	i2.Handler().ServeHTTP(rec, req)
	if !strings.Contains(rec.body.String(), `"issuer":"http://example.test"`) {
		t.Errorf("derived issuer: %s", rec.body.String())
	}
}

type recorder struct {
	h      http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestTokenEndpointErrors(t *testing.T) {
	i := startTest(t, Config{})
	rt, _, _ := i.Issue(GrantOptions{ClientID: "app", Scopes: []string{"api"}})
	prt, _, _ := i.Issue(GrantOptions{ClientID: "public"})
	tests := []struct {
		name         string
		form         url.Values
		id, secret   string
		status       int
		code         string
		wwwAuthBasic bool
	}{
		{"no client", url.Values{"grant_type": {"client_credentials"}}, "", "", 401, "invalid_client", false},
		{"wrong secret basic", url.Values{"grant_type": {"client_credentials"}}, "app", "nope", 401, "invalid_client", true},
		{"unknown client post", url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"}, "client_secret": {"y"}}, "", "", 401, "invalid_client", false},
		{"twice authenticated", url.Values{"grant_type": {"client_credentials"}, "client_secret": {"s3cret"}}, "app", "s3cret", 400, "invalid_request", false},
		{"mismatched client_id", url.Values{"grant_type": {"client_credentials"}, "client_id": {"public"}}, "app", "s3cret", 400, "invalid_request", false},
		{"public with secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {prt}, "client_id": {"public"}, "client_secret": {"x"}}, "", "", 401, "invalid_client", false},
		{"public client credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {"public"}}, "", "", 400, "unauthorized_client", false},
		{"missing grant type", url.Values{}, "app", "s3cret", 400, "invalid_request", false},
		{"unsupported grant", url.Values{"grant_type": {"password"}}, "app", "s3cret", 400, "unsupported_grant_type", false},
		{"missing refresh token", url.Values{"grant_type": {"refresh_token"}}, "app", "s3cret", 400, "invalid_request", false},
		{"unknown refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}}, "app", "s3cret", 400, "invalid_grant", false},
		{"other client's token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {prt}}, "app", "s3cret", 400, "invalid_grant", false},
		{"scope not granted", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"admin"}}, "app", "s3cret", 400, "invalid_scope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(t, i.URL()+PathToken, tt.form, tt.id, tt.secret)
			if a.status != tt.status || a.body["error"] != tt.code {
				t.Errorf("got %d %v, want %d %s", a.status, a.body, tt.status, tt.code)
			}
			if got := a.header.Get("WWW-Authenticate") != ""; got != tt.wwwAuthBasic {
				t.Errorf("WWW-Authenticate present = %v", got)
			}
		})
	}
	if st := i.Stats(); st.Rejected != len(tests) || st.Refreshes != 0 {
		t.Errorf("stats = %+v", st)
	}
	// The refresh token that failed on scope is still good, with a subset scope.
	if a := post(t, i.URL()+PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"api"}}, "app", "s3cret"); a.status != 200 {
		t.Errorf("refresh after invalid_scope: %d %v", a.status, a.body)
	}
	// A public client refreshes with its client_id alone.
	if a := post(t, i.URL()+PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {prt}, "client_id": {"public"}}, "", ""); a.status != 200 {
		t.Errorf("public refresh: %d %v", a.status, a.body)
	}
	// A body that is not a form.
	resp, err := http.Post(i.URL()+PathToken, "application/x-www-form-urlencoded", strings.NewReader(strings.Repeat("a", maxForm+10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("oversized form: %d", resp.StatusCode)
	}
}

func TestClientCredentialsIntrospectRevokeResource(t *testing.T) {
	i := startTest(t, Config{AccessTTL: time.Hour})
	a := post(t, i.URL()+PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"s3cret"}, "scope": {"api"}}, "", "")
	if a.status != 200 || a.body["refresh_token"] != nil || a.body["expires_in"].(float64) != 60 {
		t.Fatalf("client_credentials: %d %v", a.status, a.body)
	}
	at := a.body["access_token"].(string)

	call := func(tok string) int {
		req, _ := http.NewRequest("GET", i.URL()+PathResource, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := call(at); s != 200 {
		t.Errorf("resource with valid token: %d", s)
	}
	if s := call("bogus"); s != 401 {
		t.Errorf("resource with bogus token: %d", s)
	}
	if s := call(""); s != 401 {
		t.Errorf("resource without token: %d", s)
	}

	in := post(t, i.URL()+PathIntrospect, url.Values{"token": {at}}, "app", "s3cret")
	if in.body["active"] != true || in.body["client_id"] != "app" {
		t.Errorf("introspect: %v", in.body)
	}
	if bad := post(t, i.URL()+PathIntrospect, url.Values{"token": {at}}, "app", "x"); bad.status != 401 {
		t.Errorf("introspect with a bad secret: %d", bad.status)
	}
	if r := post(t, i.URL()+PathRevoke, url.Values{"token": {at}}, "app", "s3cret"); r.status != 200 {
		t.Errorf("revoke: %d", r.status)
	}
	if in := post(t, i.URL()+PathIntrospect, url.Values{"token": {at}}, "app", "s3cret"); in.body["active"] != false {
		t.Errorf("introspect after revoke: %v", in.body)
	}
	if bad := post(t, i.URL()+PathRevoke, url.Values{"token": {at}}, "app", "x"); bad.status != 401 {
		t.Errorf("revoke with a bad secret: %d", bad.status)
	}

	rt, gid, _ := i.Issue(GrantOptions{ClientID: "app"})
	post(t, i.URL()+PathRevoke, url.Values{"token": {rt}}, "app", "s3cret")
	if g, _ := i.Grant(gid); !g.Revoked {
		t.Error("revoking a refresh token did not revoke its grant")
	}
	if a := refresh(t, i, rt); a.body["error"] != "invalid_grant" {
		t.Errorf("refresh of a revoked grant: %v", a.body)
	}
	st := i.Stats()
	if st.APICalls != 3 || st.APIRejected != 2 || st.ClientCredentials != 1 || st.GrantsRevoked != 1 {
		t.Errorf("stats = %+v", st)
	}
	resp, _ := http.Get(i.URL() + PathAuthorize)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("authorize: %d", resp.StatusCode)
	}
}

func TestHoldAbandonAndRelease(t *testing.T) {
	i := startTest(t, Config{})
	rt, gid, _ := i.Issue(GrantOptions{ClientID: "app"})
	i.Hold()
	i.Hold() // idempotent

	// A held request whose client gives up spends nothing.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		req, _ := http.NewRequestWithContext(ctx, "POST", i.URL()+PathToken, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, func() bool { return i.Held() == 1 })
	cancel()
	<-done
	waitFor(t, func() bool { return i.Stats().Abandoned == 1 && i.Held() == 0 })
	if g, _ := i.Grant(gid); g.Refreshes != 0 {
		t.Fatalf("abandoned request spent the refresh token: %+v", g)
	}

	// A held request completes after Release.
	got := make(chan answer, 1)
	go func() { got <- refresh(t, i, rt) }()
	waitFor(t, func() bool { return i.Held() == 1 })
	i.Release()
	if a := <-got; a.status != 200 {
		t.Fatalf("after release: %d %v", a.status, a.body)
	}
	if st := i.Stats(); st.ReuseDetected != 0 || st.Refreshes != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLatencyAndLogger(t *testing.T) {
	var logged strings.Builder
	i := startTest(t, Config{Latency: 30 * time.Millisecond, Logger: newTestLogger(&logged)})
	rt, _, _ := i.Issue(GrantOptions{ClientID: "app"})
	start := time.Now()
	if a := refresh(t, i, rt); a.status != 200 {
		t.Fatal(a.body)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("answer took %v, want at least the configured latency", d)
	}
	refresh(t, i, "nope")
	if !strings.Contains(logged.String(), "devissuer rejected") || strings.Contains(logged.String(), rt) {
		t.Errorf("log = %q", logged.String())
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{AccessTTL: -1},
		{Clients: []Client{{ID: ""}}},
		{Clients: []Client{{ID: "a"}, {ID: "a"}}},
		{Clients: []Client{{ID: "a", AccessTTL: -1}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := Start(Config{}, "256.0.0.1:0"); err == nil {
		t.Error("Start on a bad address succeeded")
	}
	if _, err := Start(Config{AccessTTL: -1}, "127.0.0.1:0"); err == nil {
		t.Error("Start with a bad config succeeded")
	}
	i, _ := New(Config{Clients: []Client{{ID: "a"}}})
	if _, _, err := i.Issue(GrantOptions{ClientID: "b"}); err == nil {
		t.Error("Issue for an unknown client succeeded")
	}
	if _, _, err := i.Issue(GrantOptions{ClientID: "a", AccessTTL: -1}); err == nil {
		t.Error("Issue with a negative TTL succeeded")
	}
	if i.Revoke("nope") {
		t.Error("Revoke of an unknown grant")
	}
	if _, ok := i.Grant("nope"); ok {
		t.Error("Grant of an unknown grant")
	}
	if err := i.Close(); err != nil {
		t.Error(err)
	}
	if i.URL() != "" {
		t.Error("URL of an unstarted issuer")
	}
	_, gid, _ := i.Issue(GrantOptions{ClientID: "a"})
	if !i.Revoke(gid) || i.Revoke(gid) {
		t.Error("Revoke twice")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func newTestLogger(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedBuilder{b: b}, nil))
}
