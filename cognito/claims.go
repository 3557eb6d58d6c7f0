package cognito

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrMalformedJWT is wrapped by the errors of [DecodeClaims]: the text is not
// a compact JWS (three base64url parts) whose header and payload are JSON
// objects, or a registered claim has the wrong type. The error never quotes
// the token.
var ErrMalformedJWT = errors.New("cognito: malformed JWT")

// MaxJWTSize bounds the tokens DecodeClaims accepts. Cognito's tokens are a
// few kilobytes; a user in many groups makes them larger, never this large.
const MaxJWTSize = 64 << 10

// Claims are the claims of a Cognito ID or access token that this package
// uses. The zero time means the claim was absent.
type Claims struct {
	// Subject is the "sub" claim: the user's immutable id.
	Subject string
	// Username is the user's internal user name: "cognito:username" in an
	// ID token, "username" in an access token. In a pool whose users sign in
	// with an e-mail address or phone number as their user name, it equals
	// the sub; in a pool with aliases it is the name chosen at sign-up. It is
	// never the alias the user typed.
	Username string
	// Issuer is the "iss" claim, such as
	// "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf".
	Issuer string
	// TokenUse is "id" or "access".
	TokenUse string
	// ClientID is the app client: "client_id" of an access token, the first
	// "aud" of an ID token.
	ClientID string
	// Email is the "email" claim of an ID token.
	Email string
	// IssuedAt, Expiry and AuthTime are the "iat", "exp" and "auth_time"
	// claims, read by the server's clock.
	IssuedAt, Expiry, AuthTime time.Time
}

// Lifetime returns Expiry - IssuedAt, the lifetime the server gave the
// token, and false if either claim is missing or the difference is not
// positive. Unlike Expiry alone it does not depend on how far the local
// clock is from the server's.
func (c *Claims) Lifetime() (time.Duration, bool) {
	if c.Expiry.IsZero() || c.IssuedAt.IsZero() || !c.Expiry.After(c.IssuedAt) {
		return 0, false
	}
	return c.Expiry.Sub(c.IssuedAt), true
}

// PoolID returns the user pool named by the issuer (its last path element),
// or "" if the issuer has no path.
func (c *Claims) PoolID() string {
	i := strings.LastIndexByte(c.Issuer, '/')
	if i < 0 || i == len(c.Issuer)-1 {
		return ""
	}
	return c.Issuer[i+1:]
}

// DecodeClaims decodes the payload of a Cognito ID or access token WITHOUT
// verifying its signature.
//
// That is sound for the one use this package makes of it: the token came
// straight from Cognito over TLS (in the answer to InitiateAuth or
// GetTokensFromRefreshToken), so its origin is already established, and its
// claims are read only to learn the token's lifetime and the user's internal
// user name. A server that receives a Cognito token from a client must
// verify it against the pool's JWKS instead; do not use DecodeClaims for
// that.
//
// Errors wrap [ErrMalformedJWT] and never contain the token.
func DecodeClaims(jwt string) (*Claims, error) {
	if len(jwt) > MaxJWTSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedJWT, len(jwt), MaxJWTSize)
	}
	header, rest, ok := strings.Cut(jwt, ".")
	if !ok {
		return nil, fmt.Errorf("%w: no '.' separator", ErrMalformedJWT)
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return nil, fmt.Errorf("%w: not three parts (a JWE, such as a refresh token, cannot be decoded)", ErrMalformedJWT)
	}
	if header == "" || payload == "" {
		return nil, fmt.Errorf("%w: empty header or payload", ErrMalformedJWT)
	}
	hb, err := decodeSegment(header)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformedJWT)
	}
	if !isJSONObject(hb) {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformedJWT)
	}
	pb, err := decodeSegment(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformedJWT)
	}
	var raw struct {
		Sub             json.RawMessage `json:"sub"`
		CognitoUsername json.RawMessage `json:"cognito:username"`
		Username        json.RawMessage `json:"username"`
		Iss             json.RawMessage `json:"iss"`
		TokenUse        json.RawMessage `json:"token_use"`
		ClientID        json.RawMessage `json:"client_id"`
		Aud             json.RawMessage `json:"aud"`
		Email           json.RawMessage `json:"email"`
		Iat             json.RawMessage `json:"iat"`
		Exp             json.RawMessage `json:"exp"`
		AuthTime        json.RawMessage `json:"auth_time"`
	}
	if !isJSONObject(pb) {
		return nil, fmt.Errorf("%w: payload is not a JSON object", ErrMalformedJWT)
	}
	if err := json.Unmarshal(pb, &raw); err != nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object", ErrMalformedJWT)
	}
	var c Claims
	var username, cognitoUsername, clientID string
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{
		{"sub", raw.Sub, &c.Subject},
		{"cognito:username", raw.CognitoUsername, &cognitoUsername},
		{"username", raw.Username, &username},
		{"iss", raw.Iss, &c.Issuer},
		{"token_use", raw.TokenUse, &c.TokenUse},
		{"client_id", raw.ClientID, &clientID},
		{"email", raw.Email, &c.Email},
	} {
		if err := stringClaim(f.raw, f.dst); err != nil {
			return nil, fmt.Errorf("%w: claim %q: %v", ErrMalformedJWT, f.name, err)
		}
	}
	c.Username = cognitoUsername
	if c.Username == "" {
		c.Username = username
	}
	aud, err := audClaim(raw.Aud)
	if err != nil {
		return nil, fmt.Errorf("%w: claim \"aud\": %v", ErrMalformedJWT, err)
	}
	c.ClientID = clientID
	if c.ClientID == "" {
		c.ClientID = aud
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *time.Time
	}{
		{"iat", raw.Iat, &c.IssuedAt},
		{"exp", raw.Exp, &c.Expiry},
		{"auth_time", raw.AuthTime, &c.AuthTime},
	} {
		if err := timeClaim(f.raw, f.dst); err != nil {
			return nil, fmt.Errorf("%w: claim %q: %v", ErrMalformedJWT, f.name, err)
		}
	}
	return &c, nil
}

// decodeSegment decodes base64url, with or without padding.
func decodeSegment(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	return base64.RawURLEncoding.DecodeString(s)
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{' && json.Valid(b)
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func stringClaim(raw json.RawMessage, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errors.New("not a string")
	}
	return nil
}

// audClaim returns the first audience of a string or array "aud".
func audClaim(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", errors.New("neither a string nor an array of strings")
	}
	if len(list) == 0 {
		return "", nil
	}
	return list[0], nil
}

// maxNumericDate is the end of year 9999: later times are rejected rather
// than overflowing time.Duration arithmetic.
const maxNumericDate = 253402300799

// timeClaim reads a NumericDate (seconds since the epoch, possibly
// fractional).
func timeClaim(raw json.RawMessage, dst *time.Time) error {
	if isNull(raw) {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return errors.New("not a number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number")
	}
	if f < 0 || f > maxNumericDate {
		return errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	*dst = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}
