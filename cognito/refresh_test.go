package cognito

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider/types"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

const (
	testSub      = "7d4c1f1e-0000-4000-8000-000000000001"
	testEmail    = "ada@example.com"
	testPassword = "Corr3ct-Horse!"
	testSecret   = "the-client-secret-value"
)

func newTestClient(t testing.TB, srv *httptest.Server, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{Region: fakeRegion, ClientID: "fakeclient", Endpoint: srv.URL, HTTPClient: srv.Client()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// signedIn returns a fake with one user and that user's signed-in tokens.
func signedIn(t *testing.T, secret string, rotation bool) (*fakeCognito, *Client, *oauth2.Token) {
	t.Helper()
	f, srv := newFake(t)
	f.addUser(testSub, testEmail, testPassword)
	f.set(func(f *fakeCognito) { f.clientSecret = secret })
	c := newTestClient(t, srv, func(cfg *Config) { cfg.ClientSecret = secret; cfg.Rotation = rotation })
	tok, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	return f, c, tok
}

func asRefreshError(t *testing.T, err error) *tokenkeeper.RefreshError {
	t.Helper()
	var re *tokenkeeper.RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *tokenkeeper.RefreshError", err, err)
	}
	return re
}

// assertNoSecrets fails if err's text contains any of the secrets.
func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error text %q contains a secret", msg)
		}
	}
}

func TestRefresh(t *testing.T) {
	tests := []struct {
		name     string
		secret   string
		rotation bool
	}{
		{"REFRESH_TOKEN_AUTH", "", false},
		{"REFRESH_TOKEN_AUTH with secret", testSecret, false},
		{"GetTokensFromRefreshToken", "", true},
		{"GetTokensFromRefreshToken with secret", testSecret, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c, tok := signedIn(t, tt.secret, tt.rotation)
			if tok.RefreshToken == "" || IDToken(tok) == "" {
				t.Fatalf("sign-in token lacks refresh or ID token")
			}
			start := time.Now()
			nt, err := c.Refresh(context.Background(), tok)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if nt.AccessToken == tok.AccessToken || IDToken(nt) == IDToken(tok) {
				t.Errorf("Refresh returned the old access or ID token")
			}
			if got := nt.Expiry.Sub(start); got < time.Hour-time.Second || got > time.Hour+time.Second {
				t.Errorf("expiry in %v, want about 1h", got)
			}
			if nt.TokenType != "Bearer" {
				t.Errorf("TokenType = %q", nt.TokenType)
			}
			op := "InitiateAuth"
			if tt.rotation {
				op = "GetTokensFromRefreshToken"
				if nt.RefreshToken == tok.RefreshToken {
					t.Errorf("rotation: the refresh token did not change")
				}
			} else if nt.RefreshToken != tok.RefreshToken {
				t.Errorf("REFRESH_TOKEN_AUTH: refresh token changed")
			}
			if want := map[bool]int{false: 2, true: 1}[tt.rotation]; f.count(op) != want {
				t.Errorf("%s called %d times, want %d", op, f.count(op), want)
			}
		})
	}
}

// TestSecretHashInternalUsername shows the pitfall: the user signs in with
// an e-mail alias (and the sign-in hash is over the e-mail), but the refresh
// hash must be over the internal user name, the sub here.
func TestSecretHashInternalUsername(t *testing.T) {
	f, c, tok := signedIn(t, testSecret, false)
	if _, err := c.Refresh(context.Background(), tok); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	f.mu.Lock()
	seen := f.hashesSeen[len(f.hashesSeen)-1]
	f.mu.Unlock()
	if want := SecretHash(testSub, "fakeclient", testSecret); seen != want {
		t.Errorf("refresh SECRET_HASH = %q, want the hash over the sub %q", seen, want)
	}
	if naive := SecretHash(testEmail, "fakeclient", testSecret); seen == naive {
		t.Errorf("refresh SECRET_HASH is over the e-mail alias")
	}

	// A session that only knows the alias (as a naive client would use)
	// is refused, and permanently so: the hash can never match.
	naive := WithUsername(&oauth2.Token{RefreshToken: tok.RefreshToken}, testEmail)
	_, err := c.Refresh(context.Background(), naive)
	re := asRefreshError(t, err)
	if !re.Permanent || re.Code != "NotAuthorizedException" {
		t.Errorf("hash over the alias: got %+v, want permanent NotAuthorizedException", re)
	}
	assertNoSecrets(t, err, testSecret, tok.RefreshToken)

	// A refresh token alone with the right internal name works.
	bare := WithUsername(&oauth2.Token{RefreshToken: tok.RefreshToken}, testSub)
	nt, err := c.Refresh(context.Background(), bare)
	if err != nil {
		t.Fatalf("Refresh from a bare refresh token: %v", err)
	}
	if u, _ := InternalUsername(nt); u != testSub {
		t.Errorf("InternalUsername(refreshed) = %q, want %q", u, testSub)
	}
}

func TestRotationReuse(t *testing.T) {
	f, c, tok := signedIn(t, "", true)
	nt, err := c.Refresh(context.Background(), tok)
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	// Sending the spent refresh token again is refused for good.
	_, err = c.Refresh(context.Background(), tok)
	re := asRefreshError(t, err)
	if !re.Permanent || re.Code != "RefreshTokenReuseException" {
		t.Errorf("reuse: got %+v, want permanent RefreshTokenReuseException", re)
	}
	var typed *types.RefreshTokenReuseException
	if !errors.As(err, &typed) {
		t.Errorf("errors.As does not find *types.RefreshTokenReuseException in %v", err)
	}
	assertNoSecrets(t, err, tok.RefreshToken, nt.RefreshToken)
	// The rotated one still works.
	if _, err := c.Refresh(context.Background(), nt); err != nil {
		t.Errorf("refresh with the rotated token: %v", err)
	}
	if got := f.count("GetTokensFromRefreshToken"); got != 3 {
		t.Errorf("GetTokensFromRefreshToken calls = %d, want 3", got)
	}
}

func TestRefreshExpiry(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fakeCognito)
		want   time.Duration // expiry - send time
		errIs  error
		perm   bool
		noID   bool
		sameID bool
	}{
		{name: "ExpiresIn", setup: func(f *fakeCognito) { f.accessLife = 30 * time.Minute }, want: 30 * time.Minute},
		{name: "no ExpiresIn: JWT lifetime", setup: func(f *fakeCognito) { f.omitExpiresIn = true; f.accessLife = 20 * time.Minute }, want: 20 * time.Minute},
		{name: "ID token shorter", setup: func(f *fakeCognito) { f.idLife = 5 * time.Minute }, want: 5 * time.Minute},
		{name: "server clock 3h ahead, no ExpiresIn", setup: func(f *fakeCognito) {
			f.omitExpiresIn, f.offset, f.accessLife, f.idLife = true, 3*time.Hour, 10*time.Minute, 10*time.Minute
		}, want: 10 * time.Minute},
		{name: "server clock 3h behind, no ExpiresIn", setup: func(f *fakeCognito) {
			f.omitExpiresIn, f.offset, f.accessLife, f.idLife = true, -3*time.Hour, 10*time.Minute, 10*time.Minute
		}, want: 10 * time.Minute},
		{name: "server clock 3h behind, no iat: Date header corrects", setup: func(f *fakeCognito) {
			f.omitExpiresIn, f.omitIat, f.offset, f.accessLife, f.idLife = true, true, -3*time.Hour, 10*time.Minute, 10*time.Minute
		}, want: 10 * time.Minute},
		{name: "no iat, in sync", setup: func(f *fakeCognito) {
			f.omitExpiresIn, f.omitIat, f.accessLife, f.idLife = true, true, 15*time.Minute, time.Hour
		}, want: 15 * time.Minute},
		{name: "malformed access token, no ExpiresIn", setup: func(f *fakeCognito) {
			f.omitExpiresIn, f.badAccessJWT = true, true
		}, errIs: ErrNoExpiry},
		{name: "malformed access token, ExpiresIn", setup: func(f *fakeCognito) { f.badAccessJWT = true }, want: time.Hour},
		{name: "malformed ID token is kept, not used for expiry", setup: func(f *fakeCognito) {
			f.badIDJWT, f.idLife = true, time.Minute
		}, want: time.Hour},
		{name: "no ID token", setup: func(f *fakeCognito) { f.omitIDToken = true }, want: time.Hour, noID: true},
		{name: "challenge instead of tokens", setup: func(f *fakeCognito) { f.refreshChall = true }, errIs: ErrChallenge, perm: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c, tok := signedIn(t, "", false)
			f.set(tt.setup)
			sent := time.Now()
			nt, err := c.Refresh(context.Background(), tok)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("err = %v, want %v", err, tt.errIs)
				}
				if got := tokenkeeper.Classify(err).Permanent; got != tt.perm {
					t.Errorf("permanent = %v, want %v", got, tt.perm)
				}
				assertNoSecrets(t, err, tok.RefreshToken)
				return
			}
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			// The JWT's iat has a resolution of one second.
			if d := nt.Expiry.Sub(sent) - tt.want; d < -1500*time.Millisecond || d > 1500*time.Millisecond {
				t.Errorf("expiry in %v, want %v", nt.Expiry.Sub(sent), tt.want)
			}
			if got := IDToken(nt) == ""; got != tt.noID {
				t.Errorf("no ID token = %v, want %v", got, tt.noID)
			}
		})
	}
}

func TestRefreshBadInput(t *testing.T) {
	f, c, tok := signedIn(t, testSecret, false)
	_ = f
	tests := []struct {
		name  string
		tok   *oauth2.Token
		errIs error
	}{
		{"nil token", nil, ErrNoRefreshToken},
		{"no refresh token", &oauth2.Token{AccessToken: tok.AccessToken}, ErrNoRefreshToken},
		{"secret, no user name anywhere", &oauth2.Token{RefreshToken: tok.RefreshToken}, ErrNoUsername},
		{"secret, malformed JWTs", (&oauth2.Token{AccessToken: "x.y", RefreshToken: tok.RefreshToken}).WithExtra(map[string]any{"id_token": "%%%.a.b"}), ErrMalformedJWT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Refresh(context.Background(), tt.tok)
			if !errors.Is(err, tt.errIs) {
				t.Fatalf("err = %v, want %v", err, tt.errIs)
			}
			if !tokenkeeper.Classify(err).Permanent {
				t.Errorf("%v is not permanent", err)
			}
			assertNoSecrets(t, err, testSecret, tok.RefreshToken, tok.AccessToken)
		})
	}
	// Expired access and ID tokens do not matter: only the refresh token
	// is sent.
	f.set(func(f *fakeCognito) { f.offset = -2 * time.Hour })
	old, _, _ := signedInTokens(t, c)
	f.set(func(f *fakeCognito) { f.offset = 0 })
	if _, err := c.Refresh(context.Background(), old); err != nil {
		t.Errorf("refresh with expired access and ID tokens: %v", err)
	}
}

// signedInTokens signs the test user in again.
func signedInTokens(t *testing.T, c *Client) (*oauth2.Token, string, string) {
	t.Helper()
	tok, err := c.SignIn(context.Background(), testEmail, testPassword)
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	return tok, tok.AccessToken, IDToken(tok)
}

func TestTokenFromResult(t *testing.T) {
	sent := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	access := makeJWT(map[string]any{"iat": 100, "exp": 100 + 600, "username": "u"})
	tests := []struct {
		name  string
		res   *types.AuthenticationResultType
		want  time.Time
		errIs error
	}{
		{"nil", nil, time.Time{}, ErrNoTokens},
		{"no access token", &types.AuthenticationResultType{IdToken: aws.String(access)}, time.Time{}, ErrNoTokens},
		{"ExpiresIn", &types.AuthenticationResultType{AccessToken: aws.String("opaque"), ExpiresIn: 60}, sent.Add(time.Minute), nil},
		{"JWT lifetime, less a second for iat's truncation", &types.AuthenticationResultType{AccessToken: aws.String(access)}, sent.Add(10*time.Minute - time.Second), nil},
		{"ExpiresIn longer than the JWT says", &types.AuthenticationResultType{AccessToken: aws.String(access), ExpiresIn: 3600}, sent.Add(10*time.Minute - time.Second), nil},
		{"ExpiresIn shorter than the JWT says", &types.AuthenticationResultType{AccessToken: aws.String(access), ExpiresIn: 60}, sent.Add(time.Minute), nil},
		{"tiny JWT lifetime is halved", &types.AuthenticationResultType{AccessToken: aws.String(makeJWT(map[string]any{"iat": 100, "exp": 102}))}, sent.Add(time.Second), nil},
		{"expired JWT without iat", &types.AuthenticationResultType{AccessToken: aws.String(makeJWT(map[string]any{"exp": 1000}))}, time.Time{}, ErrNoExpiry},
		{"JWT without exp", &types.AuthenticationResultType{AccessToken: aws.String(makeJWT(map[string]any{"iat": 1000}))}, time.Time{}, ErrNoExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := TokenFromResult(tt.res, sent)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("err = %v, want %v", err, tt.errIs)
				}
				if tokenkeeper.Classify(err).Permanent {
					t.Errorf("%v should be transient", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("TokenFromResult: %v", err)
			}
			if !tok.Expiry.Equal(tt.want) {
				t.Errorf("expiry %v, want %v", tok.Expiry, tt.want)
			}
		})
	}
}

func tokWithRT(rt string) *oauth2.Token { return &oauth2.Token{RefreshToken: rt} }

// TestDeviceKey: in a pool that tracks devices, the device key issued at
// sign-in is sent with every refresh and carried along.
func TestDeviceKey(t *testing.T) {
	for _, rotation := range []bool{false, true} {
		t.Run(map[bool]string{false: "REFRESH_TOKEN_AUTH", true: "GetTokensFromRefreshToken"}[rotation], func(t *testing.T) {
			f, srv := newFake(t)
			f.addUser(testSub, testEmail, testPassword)
			f.set(func(f *fakeCognito) { f.devices = true })
			c := newTestClient(t, srv, func(cfg *Config) { cfg.Rotation = rotation })
			tok, err := c.SignIn(context.Background(), testEmail, testPassword)
			if err != nil {
				t.Fatal(err)
			}
			key := DeviceKey(tok)
			if key == "" {
				t.Fatal("no device key after sign-in")
			}
			cur := tok
			for i := 0; i < 2; i++ {
				cur, err = c.Refresh(context.Background(), cur)
				if err != nil {
					t.Fatalf("refresh %d: %v", i+1, err)
				}
				if DeviceKey(cur) != key || IDToken(cur) == "" {
					t.Errorf("refresh %d: device key %q, ID token %v", i+1, DeviceKey(cur), IDToken(cur) != "")
				}
			}
			// Without the key Cognito refuses, for good.
			_, err = c.Refresh(context.Background(), &oauth2.Token{RefreshToken: cur.RefreshToken})
			if re := asRefreshError(t, err); !re.Permanent || re.Code != "NotAuthorizedException" {
				t.Errorf("refresh without the device key: %+v", re)
			}
		})
	}
	if DeviceKey(nil) != "" {
		t.Errorf("DeviceKey(nil) != \"\"")
	}
}
