package cognito

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// staticTokens is a TokenGetter with a fixed answer.
type staticTokens struct {
	tok *oauth2.Token
	err error
}

func (s staticTokens) TokenContext(context.Context) (*oauth2.Token, error) { return s.tok, s.err }

func TestNewIdentitySource(t *testing.T) {
	getter := staticTokens{}
	tests := []struct {
		name   string
		cfg    IdentityConfig
		getter TokenGetter
		errIs  error
		region string
	}{
		{"region from pool id", IdentityConfig{IdentityPoolID: "eu-west-1:abc"}, getter, nil, "eu-west-1"},
		{"explicit region", IdentityConfig{IdentityPoolID: "eu-west-1:abc", Region: "eu-west-1"}, getter, nil, "eu-west-1"},
		{"emulator", IdentityConfig{IdentityPoolID: "local:abc", Endpoint: "http://127.0.0.1:1"}, getter, nil, "local"},
		{"no getter", IdentityConfig{IdentityPoolID: "eu-west-1:abc"}, nil, ErrBadConfig, ""},
		{"no pool", IdentityConfig{}, getter, ErrBadConfig, ""},
		{"pool without region", IdentityConfig{IdentityPoolID: "abc"}, getter, ErrBadConfig, ""},
		{"pool in another region", IdentityConfig{IdentityPoolID: "eu-west-1:abc", Region: "us-east-1"}, getter, ErrRegionMismatch, ""},
		{"bad endpoint", IdentityConfig{IdentityPoolID: "eu-west-1:abc", Endpoint: "nope"}, getter, ErrBadConfig, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewIdentitySource(tt.cfg, tt.getter)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("err = %v, want %v", err, tt.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Group() != "cognito-identity:"+tt.region {
				t.Errorf("Group = %q", s.Group())
			}
		})
	}
}

func TestIdentitySource(t *testing.T) {
	f, c, tok := signedIn(t, "", false)
	newSource := func(t *testing.T, getter TokenGetter, mod func(*IdentityConfig)) *IdentitySource {
		cfg := IdentityConfig{IdentityPoolID: f.identityPool, Endpoint: c.cfg.Endpoint, HTTPClient: c.cfg.HTTPClient}
		if mod != nil {
			mod(&cfg)
		}
		s, err := NewIdentitySource(cfg, getter)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	idTok := func(claims map[string]any) *oauth2.Token {
		return (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": makeJWT(claims)})
	}

	tests := []struct {
		name      string
		getter    TokenGetter
		mod       func(*IdentityConfig)
		setup     func(f *fakeCognito)
		errIs     error
		code      string
		permanent bool
	}{
		{name: "ok", getter: staticTokens{tok: tok}},
		{name: "provider name given", getter: staticTokens{tok: tok}, mod: func(c *IdentityConfig) { c.ProviderName = f.provider() }},
		{name: "wrong provider name", getter: staticTokens{tok: tok}, mod: func(c *IdentityConfig) { c.ProviderName = "cognito-idp.eu-west-1.amazonaws.com/other" },
			code: "NotAuthorizedException", permanent: true},
		{name: "account id and role", getter: staticTokens{tok: tok}, mod: func(c *IdentityConfig) { c.AccountID = "123456789012"; c.CustomRoleArn = "arn:aws:iam::1:role/r" }},
		{name: "user pool needs re-authentication", getter: staticTokens{err: tokenkeeper.ErrReauthRequired}, errIs: tokenkeeper.ErrReauthRequired, permanent: true},
		{name: "user pool token removed", getter: staticTokens{err: tokenkeeper.ErrUnknownToken}, errIs: tokenkeeper.ErrUnknownToken, permanent: true},
		{name: "user pool breaker open", getter: staticTokens{err: tokenkeeper.ErrCircuitOpen}, errIs: tokenkeeper.ErrCircuitOpen},
		{name: "no ID token", getter: staticTokens{tok: &oauth2.Token{AccessToken: "a"}}, errIs: ErrNoIDToken},
		{name: "malformed ID token", getter: staticTokens{tok: (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": "x.y"})}, errIs: ErrMalformedJWT},
		{name: "ID token without iss", getter: staticTokens{tok: idTok(map[string]any{"sub": "s"})}, errIs: ErrBadConfig, permanent: true},
		{name: "ID token expired at the server", getter: staticTokens{tok: tok}, setup: func(f *fakeCognito) { f.offset = 2 * time.Hour },
			code: "NotAuthorizedException", permanent: true},
		{name: "unknown identity pool", getter: staticTokens{tok: tok}, mod: func(c *IdentityConfig) { c.IdentityPoolID = fakeRegion + ":nope" },
			code: "ResourceNotFoundException", permanent: true},
		{name: "throttled", getter: staticTokens{tok: tok}, setup: func(f *fakeCognito) {
			f.faults = []fakeFault{{op: "GetCredentialsForIdentity", status: 400, typ: "TooManyRequestsException", retryAfter: "3"}}
		}, code: "TooManyRequestsException"},
		{name: "external service failure", getter: staticTokens{tok: tok}, setup: func(f *fakeCognito) {
			f.faults = []fakeFault{{op: "GetId", status: 400, typ: "ExternalServiceException"}}
		}, code: "ExternalServiceException"},
		{name: "no identity id", getter: staticTokens{tok: tok}, setup: func(f *fakeCognito) {
			f.faults = []fakeFault{{op: "GetId", status: 200, body: `{}`}}
		}, errIs: ErrNoCredentials},
		{name: "no credentials", getter: staticTokens{tok: tok}, setup: func(f *fakeCognito) {
			f.faults = []fakeFault{{op: "GetCredentialsForIdentity", status: 200, body: `{"IdentityId":"x"}`}}
		}, errIs: ErrNoCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.set(func(f *fakeCognito) { f.offset, f.faults = 0, nil })
			if tt.setup != nil {
				f.set(tt.setup)
			}
			s := newSource(t, tt.getter, tt.mod)
			start := time.Now()
			ct, err := s.Refresh(context.Background(), nil)
			if tt.errIs == nil && tt.code == "" {
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				creds, err := CredentialsFromToken(ct)
				if err != nil {
					t.Fatal(err)
				}
				if d := creds.Expires.Sub(start); d < time.Hour-2*time.Second || d > time.Hour+2*time.Second {
					t.Errorf("expires in %v, want 1h", d)
				}
				if s.IdentityID() == "" || ct.Extra("identity_id") != s.IdentityID() {
					t.Errorf("identity id not kept")
				}
				return
			}
			if err == nil {
				t.Fatalf("Refresh succeeded, want an error")
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("err = %v, want %v", err, tt.errIs)
			}
			re := tokenkeeper.Classify(err)
			if re.Permanent != tt.permanent {
				t.Errorf("permanent = %v, want %v (%v)", re.Permanent, tt.permanent, err)
			}
			if tt.code != "" && re.Code != tt.code {
				t.Errorf("code = %q, want %q", re.Code, tt.code)
			}
			assertNoSecrets(t, err, tok.AccessToken, IDToken(tok), tok.RefreshToken)
		})
	}
}

func TestIdentityReuseAndSkew(t *testing.T) {
	f, c, tok := signedIn(t, "", false)
	s, err := NewIdentitySource(IdentityConfig{IdentityPoolID: f.identityPool, Endpoint: c.cfg.Endpoint, HTTPClient: c.cfg.HTTPClient}, staticTokens{tok: tok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	first := s.IdentityID()
	// The identity id is remembered.
	if _, err := s.Refresh(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if f.count("GetId") != 1 {
		t.Errorf("GetId calls = %d, want 1", f.count("GetId"))
	}
	// The identity was deleted: it is looked up again within one attempt.
	f.set(func(f *fakeCognito) { delete(f.identities, testSub) })
	if _, err := s.Refresh(context.Background(), nil); err != nil {
		t.Fatalf("after the identity was deleted: %v", err)
	}
	if f.count("GetId") != 2 || s.IdentityID() == first {
		t.Errorf("GetId calls = %d, identity %q (was %q)", f.count("GetId"), s.IdentityID(), first)
	}
	// The server's clock is 90 minutes ahead: its Expiration is corrected
	// by the Date header, so the credentials do not look long-lived.
	f.set(func(f *fakeCognito) { f.offset = 90 * time.Minute; f.idLife = 4 * time.Hour })
	tok2, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	s.idTokens = staticTokens{tok: tok2}
	start := time.Now()
	ct, err := s.Refresh(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := ct.Expiry.Sub(start); d < time.Hour-2*time.Second || d > time.Hour+2*time.Second {
		t.Errorf("with the server 90 min ahead: expires in %v, want about 1h", d)
	}
}

func TestCredentialsFromToken(t *testing.T) {
	tests := []struct {
		name string
		tok  *oauth2.Token
		ok   bool
	}{
		{"nil", nil, false},
		{"empty", &oauth2.Token{}, false},
		{"user-pool token", (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": "x"}), false},
		{"no session token, no expiry", (&oauth2.Token{AccessToken: "AKIA"}).WithExtra(map[string]any{"aws_secret_access_key": "s"}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CredentialsFromToken(tt.tok)
			if (err == nil) != tt.ok {
				t.Fatalf("CredentialsFromToken = %+v, %v", c, err)
			}
			if err != nil && !errors.Is(err, ErrNoCredentials) {
				t.Errorf("err %v does not wrap ErrNoCredentials", err)
			}
			if err == nil && (c.CanExpire || c.Source != "tokenkeeper/cognito") {
				t.Errorf("credentials %+v", c)
			}
		})
	}
	// The provider passes the keeper's errors and converts once per token.
	p := NewCredentialsProvider(staticTokens{err: tokenkeeper.ErrReauthRequired})
	if _, err := p.Retrieve(context.Background()); !errors.Is(err, tokenkeeper.ErrReauthRequired) {
		t.Errorf("Retrieve = %v", err)
	}
	p = NewCredentialsProvider(staticTokens{tok: &oauth2.Token{AccessToken: "a"}})
	if _, err := p.Retrieve(context.Background()); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("Retrieve of a non-credentials token = %v", err)
	}
}

func BenchmarkCredentialsRetrieve(b *testing.B) {
	tok := (&oauth2.Token{AccessToken: "AKIA", Expiry: time.Now().Add(time.Hour)}).WithExtra(map[string]any{
		"aws_secret_access_key": "s", "aws_session_token": "t",
	})
	p := NewCredentialsProvider(staticTokens{tok: tok})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Retrieve(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeeperCredentialsRetrieve measures Retrieve through a real
// keeper's hot path, as an AWS SDK client calls it before each request.
func BenchmarkKeeperCredentialsRetrieve(b *testing.B) {
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	tok := (&oauth2.Token{AccessToken: "AKIA", Expiry: time.Now().Add(time.Hour)}).WithExtra(map[string]any{
		"aws_secret_access_key": "s", "aws_session_token": "t",
	})
	src := tokenkeeper.SourceFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) { return tok, nil })
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "aws", Source: src, Token: tok})
	if err != nil {
		b.Fatal(err)
	}
	p := NewCredentialsProvider(h)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Retrieve(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
