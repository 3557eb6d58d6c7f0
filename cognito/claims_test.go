package cognito

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// rawJWT builds a token from a raw payload text.
func rawJWT(payload string) string {
	return seg(`{"alg":"RS256"}`) + "." + seg(payload) + ".c2ln"
}

func TestDecodeClaims(t *testing.T) {
	iat := time.Unix(1700000000, 0).UTC()
	tests := []struct {
		name string
		jwt  string
		want *Claims
	}{
		{
			name: "ID token",
			jwt: rawJWT(`{"sub":"s-1","cognito:username":"s-1","aud":"client","email":"a@b.c","token_use":"id",
				"iss":"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_P","iat":1700000000,"exp":1700003600,"auth_time":1700000000}`),
			want: &Claims{Subject: "s-1", Username: "s-1", ClientID: "client", Email: "a@b.c", TokenUse: "id",
				Issuer: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_P", IssuedAt: iat, Expiry: iat.Add(time.Hour), AuthTime: iat},
		},
		{
			name: "access token",
			jwt:  rawJWT(`{"sub":"s-1","username":"alice","client_id":"client","token_use":"access","iat":1700000000,"exp":1700000300}`),
			want: &Claims{Subject: "s-1", Username: "alice", ClientID: "client", TokenUse: "access", IssuedAt: iat, Expiry: iat.Add(5 * time.Minute)},
		},
		{
			name: "cognito:username wins over username, aud array, fractional exp",
			jwt:  rawJWT(`{"cognito:username":"internal","username":"other","aud":["c1","c2"],"exp":1700000000.5}`),
			want: &Claims{Username: "internal", ClientID: "c1", Expiry: iat.Add(500 * time.Millisecond)},
		},
		{name: "empty aud array, nulls", jwt: rawJWT(`{"aud":[],"sub":null,"exp":null}`), want: &Claims{}},
		{name: "padded segments", jwt: seg(`{"alg":"none"}`) + "==." + seg(`{"sub":"x"}`) + "=.", want: &Claims{Subject: "x"}},
		{name: "unknown claims ignored", jwt: rawJWT(`{"sub":"x","custom:tier":{"a":[1,2]},"cognito:groups":["g"]}`), want: &Claims{Subject: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeClaims(tt.jwt)
			if err != nil {
				t.Fatalf("DecodeClaims: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeClaimsMalformed(t *testing.T) {
	good := seg(`{"alg":"RS256"}`)
	tests := []struct {
		name, jwt, reason string
	}{
		{"empty", "", "separator"},
		{"one part", "abcdef", "separator"},
		{"two parts", good + "." + seg(`{}`), "three parts"},
		{"JWE (refresh token)", "eyJjdHkiOiJKV1QifQ.a.b.c.d", "three parts"},
		{"empty payload", good + "..sig", "empty"},
		{"header not base64", "!!!." + seg(`{}`) + ".s", "header is not base64url"},
		{"header not JSON", seg("hello") + "." + seg(`{}`) + ".s", "header is not a JSON object"},
		{"payload not base64", good + ".*&^.s", "payload is not base64url"},
		{"payload array", rawJWT(`[1,2]`), "payload is not a JSON object"},
		{"payload truncated", rawJWT(`{"sub":"x"`), "payload is not a JSON object"},
		{"sub not a string", rawJWT(`{"sub":42}`), `"sub"`},
		{"aud number", rawJWT(`{"aud":42}`), `"aud"`},
		{"exp string", rawJWT(`{"exp":"soon"}`), `"exp"`},
		{"exp negative", rawJWT(`{"exp":-1}`), "out of range"},
		{"exp beyond year 9999", rawJWT(`{"exp":1e300}`), "out of range"},
		{"iat object", rawJWT(`{"iat":{}}`), `"iat"`},
		{"too large", rawJWT(`{"sub":"` + strings.Repeat("x", MaxJWTSize) + `"}`), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeClaims(tt.jwt)
			if err == nil {
				t.Fatalf("DecodeClaims succeeded: %+v", c)
			}
			if !errors.Is(err, ErrMalformedJWT) {
				t.Errorf("%v does not wrap ErrMalformedJWT", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
			if len(tt.jwt) > 8 && strings.Contains(err.Error(), tt.jwt) {
				t.Errorf("error quotes the token")
			}
		})
	}
}

func TestClaimsHelpers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name     string
		c        Claims
		life     time.Duration
		lifeOK   bool
		poolID   string
		provider string
	}{
		{"complete", Claims{IssuedAt: t0, Expiry: t0.Add(time.Hour), Issuer: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_P"},
			time.Hour, true, "eu-west-1_P", "cognito-idp.eu-west-1.amazonaws.com/eu-west-1_P"},
		{"no iat", Claims{Expiry: t0, Issuer: "http://127.0.0.1:9229/local_X"}, 0, false, "local_X", "127.0.0.1:9229/local_X"},
		{"exp before iat", Claims{IssuedAt: t0, Expiry: t0.Add(-time.Second), Issuer: "no-path"}, 0, false, "", "no-path"},
		{"trailing slash", Claims{Issuer: "https://x/"}, 0, false, "", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			life, ok := tt.c.Lifetime()
			if life != tt.life || ok != tt.lifeOK {
				t.Errorf("Lifetime = %v, %v; want %v, %v", life, ok, tt.life, tt.lifeOK)
			}
			if got := tt.c.PoolID(); got != tt.poolID {
				t.Errorf("PoolID = %q, want %q", got, tt.poolID)
			}
			if got := providerName(tt.c.Issuer); got != tt.provider {
				t.Errorf("providerName = %q, want %q", got, tt.provider)
			}
		})
	}
}

func TestSecretHash(t *testing.T) {
	// Reference values computed independently (Python hmac).
	tests := []struct{ user, client, secret, want string }{
		{"user", "client", "secret", "wvW87lzZoI+qQCVGmWVBJLlucdJ65huAVP1z+0MgA6E="},
		{testSub, "fakeclient", testSecret, "hO0co5P0Gkn4YqiMlhfWCPcNfeyCnpksCaWavTKLSRQ="},
	}
	for _, tt := range tests {
		if got := SecretHash(tt.user, tt.client, tt.secret); got != tt.want {
			t.Errorf("SecretHash(%q, %q, ...) = %q, want %q", tt.user, tt.client, got, tt.want)
		}
	}
}

func TestInternalUsername(t *testing.T) {
	id := makeJWT(map[string]any{"sub": "sub-1", "cognito:username": "internal-id"})
	access := makeJWT(map[string]any{"sub": "sub-1", "username": "internal-access"})
	subOnly := makeJWT(map[string]any{"sub": "sub-only"})
	withID := func(t *oauth2.Token, id string) *oauth2.Token { return t.WithExtra(map[string]any{"id_token": id}) }
	tests := []struct {
		name  string
		tok   *oauth2.Token
		want  string
		errIs error
	}{
		{"nil", nil, "", ErrNoUsername},
		{"ID token first", withID(&oauth2.Token{AccessToken: access}, id), "internal-id", nil},
		{"access token", &oauth2.Token{AccessToken: access}, "internal-access", nil},
		{"WithUsername beats a bare sub", WithUsername(&oauth2.Token{AccessToken: subOnly}, "named"), "named", nil},
		{"sub as last resort", &oauth2.Token{AccessToken: subOnly}, "sub-only", nil},
		{"opaque access token, no extras", &oauth2.Token{AccessToken: "opaque", RefreshToken: "r"}, "", ErrMalformedJWT},
		{"nothing at all", &oauth2.Token{RefreshToken: "r"}, "", ErrNoUsername},
		{"malformed ID token, good access token", withID(&oauth2.Token{AccessToken: access}, "bad"), "internal-access", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InternalUsername(tt.tok)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) || !errors.Is(err, ErrNoUsername) {
					t.Fatalf("err = %v, want %v and ErrNoUsername", err, tt.errIs)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("InternalUsername = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// WithUsername keeps the ID token.
	tok := WithUsername(withID(&oauth2.Token{RefreshToken: "r"}, id), "x")
	if IDToken(tok) != id || tok.RefreshToken != "r" {
		t.Errorf("WithUsername lost the ID or refresh token")
	}
	if IDToken(nil) != "" {
		t.Errorf("IDToken(nil) != \"\"")
	}
}

func TestExtraKeys(t *testing.T) {
	want := []string{"id_token", "cognito:username", "device_key", "aws_secret_access_key", "aws_session_token", "identity_id"}
	if diff := cmp.Diff(want, ExtraKeys()); diff != "" {
		t.Errorf("ExtraKeys (-want +got):\n%s", diff)
	}
}
