package cognito

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// These tests run a real keeper in real time against the fake server (or
// cognito-local), with token lifetimes of a few seconds. They wait for the
// keeper's events, never for a fixed time.

// testKeeper starts a keeper whose events arrive on the returned channel.
func testKeeper(t *testing.T, cfg tokenkeeper.Config) (*tokenkeeper.Keeper, <-chan tokenkeeper.Event) {
	t.Helper()
	ch := make(chan tokenkeeper.Event, 4096)
	done := make(chan struct{})
	cfg.OnEvent = func(e tokenkeeper.Event) {
		select {
		case ch <- e:
		case <-done:
		}
	}
	k, err := tokenkeeper.New(cfg)
	if err != nil {
		t.Fatalf("tokenkeeper.New: %v", err)
	}
	t.Cleanup(func() {
		close(done)
		k.Close()
	})
	return k, ch
}

// waitEvent returns the first event that matches, failing after timeout.
// Events that do not match are passed to seen (if not nil).
func waitEvent(t *testing.T, ch <-chan tokenkeeper.Event, timeout time.Duration, match func(tokenkeeper.Event) bool, seen func(tokenkeeper.Event)) tokenkeeper.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e
			}
			if seen != nil {
				seen(e)
			}
		case <-deadline.C:
			t.Fatalf("no matching event within %v", timeout)
			return tokenkeeper.Event{}
		}
	}
}

func is(kind tokenkeeper.EventKind, token string) func(tokenkeeper.Event) bool {
	return func(e tokenkeeper.Event) bool { return e.Kind == kind && e.Token == token }
}

// fastPolicy retries quickly, so that a few faults fit into a token's
// refresh window.
var fastPolicy = tokenkeeper.Policy{RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}

// faultPolicy, for tokens that live 3 s, refreshes 1.5 to 2 s after issue
// and retries within 100 ms: five failed attempts end long before the token
// stops being handed out (2.85 s after issue).
var faultPolicy = tokenkeeper.Policy{StartLead: 2 * time.Second, EndLead: 1500 * time.Millisecond,
	RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}

// memStore records every save, in order.
type memStore struct {
	mu    sync.Mutex
	toks  map[string]*oauth2.Token
	saves []string // refresh tokens saved, in order
}

func (s *memStore) Load(_ context.Context, name string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.toks[name]; ok {
		return t, nil
	}
	return nil, tokenkeeper.ErrNotFound
}

func (s *memStore) Save(_ context.Context, name string, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.toks == nil {
		s.toks = map[string]*oauth2.Token{}
	}
	s.toks[name] = tok
	if !strings.HasSuffix(name, "/aws") {
		s.saves = append(s.saves, tok.RefreshToken)
	}
	return nil
}

func (s *memStore) Delete(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.toks, name)
	return nil
}

func (s *memStore) saved(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.saves {
		if x == rt {
			return true
		}
	}
	return false
}

// TestKeeperRotation keeps a session whose app client rotates refresh
// tokens: every rotated refresh token is in the Store before the access token
// that came with it is handed out, no refresh token is sent twice, and a new
// keeper resumes from the Store.
func TestKeeperRotation(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.addUser(testSub, testEmail, testPassword)
	f.set(func(f *fakeCognito) { f.accessLife, f.idLife = 3*time.Second, 3*time.Second })
	c := newTestClient(t, srv, func(cfg *Config) { cfg.Rotation = true })
	tok, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	k, events := testKeeper(t, tokenkeeper.Config{Store: store, Policy: fastPolicy})
	s, err := Keep(k, SessionConfig{Client: c, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	seenRT := map[string]bool{tok.RefreshToken: true}
	const refreshes = 3
	for i := 0; i < refreshes; i++ {
		waitEvent(t, events, 10*time.Second, is(tokenkeeper.EventSucceeded, "cognito"), func(e tokenkeeper.Event) {
			if e.Kind == tokenkeeper.EventFailed || e.Kind == tokenkeeper.EventReauthRequired {
				t.Errorf("unexpected %s: %v", e.Kind, e.Err)
			}
		})
		cur, err := s.UserPool.TokenContext(context.Background())
		if err != nil {
			t.Fatalf("TokenContext: %v", err)
		}
		if !store.saved(cur.RefreshToken) {
			t.Errorf("refresh %d: the handed-out token's refresh token is not in the store", i+1)
		}
		seenRT[cur.RefreshToken] = true
		if IDToken(cur) == "" {
			t.Errorf("refresh %d: no ID token", i+1)
		}
	}
	if len(seenRT) < refreshes+1 {
		t.Errorf("saw %d distinct refresh tokens after %d refreshes", len(seenRT), refreshes)
	}
	if n := f.count("GetTokensFromRefreshToken"); n < refreshes {
		t.Errorf("GetTokensFromRefreshToken calls = %d", n)
	}
	k.Close()

	// A new process: the keeper loads the rotated token from the store.
	k2, events2 := testKeeper(t, tokenkeeper.Config{Store: store, Policy: fastPolicy})
	s2, err := Keep(k2, SessionConfig{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.UserPool.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	waitEvent(t, events2, 5*time.Second, is(tokenkeeper.EventSucceeded, "cognito"), nil)
}

// TestKeeperSurvivesFaults injects throttling, server errors, an HTML error
// page and a dropped connection into the refreshes: the keeper keeps
// serving the still-valid token, never asks for re-authentication, and
// refreshes once the faults pass.
func TestKeeperSurvivesFaults(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.addUser(testSub, testEmail, testPassword)
	f.set(func(f *fakeCognito) { f.accessLife, f.idLife = 3*time.Second, 3*time.Second })
	c := newTestClient(t, srv, func(cfg *Config) { cfg.ClientSecret = testSecret })
	f.set(func(f *fakeCognito) { f.clientSecret = testSecret })
	tok, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	faults := []fakeFault{
		{op: "InitiateAuth", status: 400, typ: "TooManyRequestsException", msg: "Rate exceeded"},
		{op: "InitiateAuth", status: 500, typ: "InternalErrorException", msg: "internal"},
		{op: "InitiateAuth", status: 503, body: "<html>Service Unavailable</html>"},
		{op: "InitiateAuth", drop: true},
		{op: "InitiateAuth", status: 400, typ: "ThrottlingException", msg: "slow down"},
	}
	f.inject(faults...)
	k, events := testKeeper(t, tokenkeeper.Config{Policy: faultPolicy, Breaker: tokenkeeper.BreakerSettings{Failures: 20}})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "cognito", Source: c, Token: tok, Group: c.Group()})
	if err != nil {
		t.Fatal(err)
	}
	failures := 0
	codes := map[string]bool{}
	waitEvent(t, events, 10*time.Second, is(tokenkeeper.EventSucceeded, "cognito"), func(e tokenkeeper.Event) {
		switch e.Kind {
		case tokenkeeper.EventFailed:
			failures++
			re := tokenkeeper.Classify(e.Err)
			codes[re.Code] = true
			if re.Permanent {
				t.Errorf("fault %d classified as permanent: %v", failures, e.Err)
			}
			// Meanwhile a valid token is served. (The event is read
			// after the fact: by now the refresh may have succeeded.)
			got, err := h.TokenContext(context.Background())
			if err != nil || !got.Expiry.After(time.Now()) {
				t.Errorf("during faults: TokenContext = %v", err)
			}
		case tokenkeeper.EventReauthRequired:
			t.Errorf("session dropped: %v", e.Err)
		}
	})
	if failures != len(faults) {
		t.Errorf("%d failed attempts, want %d", failures, len(faults))
	}
	for _, code := range []string{"TooManyRequestsException", "InternalErrorException", "ThrottlingException", ""} {
		if !codes[code] {
			t.Errorf("no failure with code %q", code)
		}
	}
	got, err := h.TokenContext(context.Background())
	if err != nil || got.AccessToken == tok.AccessToken {
		t.Fatalf("after the faults: %v; want a new token", err)
	}
	if !got.Expiry.After(time.Now()) {
		t.Errorf("handed-out token expired")
	}
}

// TestKeeperPermanent: after the refresh token is revoked, the next refresh
// puts the session into re-authentication, and a new sign-in revives it.
func TestKeeperPermanent(t *testing.T) {
	f, c, tok := signedIn(t, "", false)
	k, events := testKeeper(t, tokenkeeper.Config{Policy: fastPolicy})
	s, err := Keep(k, SessionConfig{Client: c, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(context.Background(), tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	// The server rejected the access token (a 401 from an API, say).
	if !s.UserPool.Invalidate(tok) {
		t.Fatal("Invalidate refused the current token")
	}
	e := waitEvent(t, events, 5*time.Second, is(tokenkeeper.EventReauthRequired, "cognito"), nil)
	if re := tokenkeeper.Classify(e.Err); re.Code != "NotAuthorizedException" {
		t.Errorf("reauth cause %+v", re)
	}
	if _, err := s.UserPool.TokenContext(context.Background()); !errors.Is(err, tokenkeeper.ErrReauthRequired) {
		t.Errorf("TokenContext = %v, want ErrReauthRequired", err)
	}
	// Sign in again.
	tok2, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Adopt(context.Background(), tok2); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if got, err := s.UserPool.TokenContext(context.Background()); err != nil || got.AccessToken != tok2.AccessToken {
		t.Errorf("after Adopt: %v", err)
	}
	_ = f
}

// TestSessionCredentials keeps user-pool tokens and identity-pool
// credentials; an AWS SDK client signs its requests with them.
func TestSessionCredentials(t *testing.T) {
	t.Parallel()
	f, c, tok := signedIn(t, "", false)
	f.set(func(f *fakeCognito) {
		f.accessLife, f.idLife, f.credsLife = 3*time.Second, 3*time.Second, 3*time.Second
	})
	// Sign in again for short-lived tokens.
	tok, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	srvURL := c.cfg.Endpoint
	k, events := testKeeper(t, tokenkeeper.Config{Policy: fastPolicy})
	s, err := Keep(k, SessionConfig{Client: c, Token: tok, Identity: &IdentityConfig{
		IdentityPoolID: f.identityPool, Endpoint: srvURL, HTTPClient: c.cfg.HTTPClient,
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := s.Credentials()
	creds, err := p.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	if !strings.HasPrefix(creds.AccessKeyID, "ASIAFAKE") || creds.SecretAccessKey == "" || creds.SessionToken == "" || !creds.CanExpire {
		t.Errorf("credentials %+v", creds)
	}
	if s.IdentityID() == "" {
		t.Errorf("no identity id")
	}

	// Any AWS SDK client can use the provider.
	admin := cognitoidentityprovider.New(cognitoidentityprovider.Options{
		Region: fakeRegion, BaseEndpoint: aws.String(srvURL), Credentials: p,
		HTTPClient: c.cfg.HTTPClient, Retryer: aws.NopRetryer{},
	})
	if _, err := admin.ListUserPools(context.Background(), &cognitoidentityprovider.ListUserPoolsInput{MaxResults: aws.Int32(1)}); err != nil {
		t.Fatalf("signed call: %v", err)
	}
	f.mu.Lock()
	auth := f.lastAuth
	f.mu.Unlock()
	if !strings.Contains(auth, "Credential="+creds.AccessKeyID+"/") {
		t.Errorf("the signed request used other credentials: %q", auth)
	}

	// Both tokens are refreshed in the background; Retrieve then serves
	// the new credentials without waiting. (The first success of
	// "cognito/aws" is the initial fetch, which Retrieve waited for.)
	waitEvent(t, events, 5*time.Second, is(tokenkeeper.EventSucceeded, "cognito/aws"), nil)
	waitEvent(t, events, 10*time.Second, is(tokenkeeper.EventSucceeded, "cognito/aws"), nil)
	creds2, err := p.Retrieve(context.Background())
	if err != nil || creds2.AccessKeyID == creds.AccessKeyID {
		t.Errorf("after a refresh: %v, same key %v", err, creds2.AccessKeyID == creds.AccessKeyID)
	}
	if f.count("GetId") != 1 {
		t.Errorf("GetId called %d times, want once", f.count("GetId"))
	}

	// A new sign-in replaces both tokens at once.
	tok2, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Adopt(context.Background(), nil); !errors.Is(err, tokenkeeper.ErrInvalidToken) {
		t.Errorf("Adopt(nil) = %v", err)
	}
	f.inject(fakeFault{op: "GetCredentialsForIdentity", status: 500, typ: "InternalErrorException"})
	if err := s.Adopt(context.Background(), tok2); err == nil || tokenkeeper.Classify(err).Permanent {
		t.Errorf("Adopt with a failing identity pool = %v, want a transient error", err)
	}
	if err := s.Adopt(context.Background(), tok2); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	creds3, err := p.Retrieve(context.Background())
	if err != nil || creds3.AccessKeyID == creds2.AccessKeyID {
		t.Errorf("after Adopt: %v, same credentials %v", err, creds3.AccessKeyID == creds2.AccessKeyID)
	}
	if err := s.Remove(); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if names := k.Names(); len(names) != 0 {
		t.Errorf("after Remove the keeper holds %v", names)
	}
}

func TestKeepErrors(t *testing.T) {
	_, srv := newFake(t)
	c := newTestClient(t, srv, nil)
	k, _ := testKeeper(t, tokenkeeper.Config{})
	tests := []struct {
		name string
		k    *tokenkeeper.Keeper
		cfg  SessionConfig
	}{
		{"no keeper", nil, SessionConfig{Client: c}},
		{"no client", k, SessionConfig{}},
		{"bad identity config", k, SessionConfig{Client: c, Token: tokWithRT("r"), Identity: &IdentityConfig{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Keep(tt.k, tt.cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("Keep = %v, want ErrBadConfig", err)
			}
		})
	}
	// Nothing was left behind: the name is free.
	if len(k.Names()) != 0 {
		t.Errorf("keeper holds %v", k.Names())
	}
	if _, err := Keep(k, SessionConfig{Client: c, Token: tokWithRT("r"), Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Keep(k, SessionConfig{Client: c, Token: tokWithRT("r"), Name: "x"}); !errors.Is(err, tokenkeeper.ErrDuplicateToken) {
		t.Errorf("duplicate name: %v", err)
	}
	s := &Session{}
	if s.IdentityID() != "" || s.Credentials() != nil {
		t.Errorf("empty session has identity")
	}
}
