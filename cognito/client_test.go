package cognito

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider/types"
	"github.com/tokenkeeper/tokenkeeper"
)

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		errIs error // nil: valid
	}{
		{"minimal", Config{Region: "eu-west-1", ClientID: "c"}, nil},
		{"gov region", Config{Region: "us-gov-west-1", ClientID: "c"}, nil},
		{"pool in region", Config{Region: "eu-west-1", ClientID: "c", UserPoolID: "eu-west-1_AbC"}, nil},
		{"emulator region and pool", Config{Region: "local", ClientID: "c", UserPoolID: "local_AbC", Endpoint: "http://127.0.0.1:9229"}, nil},
		{"no region", Config{ClientID: "c"}, ErrBadConfig},
		{"malformed region", Config{Region: "Frankfurt", ClientID: "c"}, ErrBadConfig},
		{"emulator region without endpoint", Config{Region: "local", ClientID: "c"}, ErrBadConfig},
		{"no client id", Config{Region: "eu-west-1", ClientID: " "}, ErrBadConfig},
		{"pool in another region", Config{Region: "us-east-1", ClientID: "c", UserPoolID: "eu-west-1_AbC"}, ErrRegionMismatch},
		{"pool id without region", Config{Region: "us-east-1", ClientID: "c", UserPoolID: "AbC"}, ErrBadConfig},
		{"endpoint not a URL", Config{Region: "us-east-1", ClientID: "c", Endpoint: "localhost:9229"}, ErrBadConfig},
		{"endpoint with bad scheme", Config{Region: "us-east-1", ClientID: "c", Endpoint: "ftp://x"}, ErrBadConfig},
		{"endpoint unparsable", Config{Region: "us-east-1", ClientID: "c", Endpoint: "http://[::1"}, ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.errIs == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.errIs) || !errors.Is(err, ErrBadConfig) {
				t.Fatalf("New = %v, %v; want an error wrapping %v and ErrBadConfig", c, err, tt.errIs)
			}
		})
	}
}

func TestClientStringHidesSecret(t *testing.T) {
	c, err := New(Config{Region: "eu-west-1", ClientID: "the-client", ClientSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), c.Group()} {
		if strings.Contains(s, testSecret) {
			t.Errorf("%q shows the secret", s)
		}
	}
	if c.Group() != "cognito-idp:eu-west-1" {
		t.Errorf("Group = %q", c.Group())
	}
}

func TestSignIn(t *testing.T) {
	tests := []struct {
		name      string
		secret    string
		user      string
		password  string
		clientID  string
		code      string // "" = success
		permanent bool
	}{
		{"e-mail alias", "", testEmail, testPassword, "", "", false},
		{"internal user name", "", testSub, testPassword, "", "", false},
		{"alias with secret", testSecret, testEmail, testPassword, "", "", false},
		{"wrong password", "", testEmail, "wrong-Passw0rd", "", "NotAuthorizedException", true},
		{"unknown user", "", "nobody@example.com", testPassword, "", "NotAuthorizedException", true},
		{"wrong secret", "wrong-secret", testEmail, testPassword, "", "NotAuthorizedException", true},
		{"unknown client id", "", testEmail, testPassword, "no-such-client", "ResourceNotFoundException", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t)
			f.addUser(testSub, testEmail, testPassword)
			if tt.secret != "" {
				f.set(func(f *fakeCognito) { f.clientSecret = testSecret })
			}
			c := newTestClient(t, srv, func(cfg *Config) {
				cfg.ClientSecret = tt.secret
				if tt.clientID != "" {
					cfg.ClientID = tt.clientID
				}
			})
			tok, err := c.SignIn(context.Background(), tt.user, tt.password)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("SignIn: %v", err)
				}
				if tok.AccessToken == "" || tok.RefreshToken == "" || IDToken(tok) == "" || tok.Expiry.IsZero() {
					t.Errorf("incomplete token")
				}
				return
			}
			re := asRefreshError(t, err)
			if re.Code != tt.code || re.Permanent != tt.permanent {
				t.Errorf("got %+v, want code %s, permanent %v", re, tt.code, tt.permanent)
			}
			assertNoSecrets(t, err, tt.password, tt.secret, testSecret)
		})
	}
}

func TestNewPasswordChallenge(t *testing.T) {
	for _, secret := range []string{"", testSecret} {
		t.Run("secret="+map[bool]string{true: "yes", false: "no"}[secret != ""], func(t *testing.T) {
			f, srv := newFake(t)
			f.addUser(testSub, testEmail, "Temp-Passw0rd!")
			f.set(func(f *fakeCognito) { f.users[testSub].newPass = true; f.clientSecret = secret })
			c := newTestClient(t, srv, func(cfg *Config) { cfg.ClientSecret = secret })

			_, err := c.SignIn(context.Background(), testEmail, "Temp-Passw0rd!")
			var ch *ChallengeError
			if !errors.As(err, &ch) || !errors.Is(err, ErrChallenge) {
				t.Fatalf("SignIn = %v, want a *ChallengeError", err)
			}
			if ch.Name != string(types.ChallengeNameTypeNewPasswordRequired) || ch.Username != testSub {
				t.Errorf("challenge %q for %q, want NEW_PASSWORD_REQUIRED for the internal name", ch.Name, ch.Username)
			}
			if strings.Contains(err.Error(), "session-") {
				t.Errorf("challenge error shows the session")
			}
			tok, err := c.RespondToChallenge(context.Background(), ch, map[string]string{"NEW_PASSWORD": testPassword})
			if err != nil {
				t.Fatalf("RespondToChallenge: %v", err)
			}
			if IDToken(tok) == "" {
				t.Errorf("no ID token")
			}
			// The new password works.
			if _, err := c.SignIn(context.Background(), testEmail, testPassword); err != nil {
				t.Errorf("SignIn with the new password: %v", err)
			}
			// A stale challenge is refused.
			_, err = c.RespondToChallenge(context.Background(), ch, map[string]string{"NEW_PASSWORD": "x"})
			if re := asRefreshError(t, err); re.Code != "NotAuthorizedException" {
				t.Errorf("stale challenge: %+v", re)
			}
		})
	}
	c := newTestClient(t, mustFakeServer(t), nil)
	if _, err := c.RespondToChallenge(context.Background(), nil, nil); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil challenge: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	f, c, tok := signedIn(t, testSecret, false)
	if err := c.Revoke(context.Background(), tok.RefreshToken); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, err := c.Refresh(context.Background(), tok)
	re := asRefreshError(t, err)
	if !re.Permanent || re.Code != "NotAuthorizedException" {
		t.Errorf("refresh after revoke: %+v", re)
	}
	if !tokenkeeper.Classify(err).Permanent {
		t.Errorf("keeper would not see it as permanent")
	}
	if f.count("RevokeToken") != 1 {
		t.Errorf("RevokeToken calls = %d", f.count("RevokeToken"))
	}
	f.inject(fakeFault{op: "RevokeToken", status: 500, typ: "InternalErrorException"})
	if err := c.Revoke(context.Background(), tok.RefreshToken); tokenkeeper.Classify(err).Permanent {
		t.Errorf("Revoke with a 500: %v, want transient", err)
	}
}
