package oidc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// maxJWTLen bounds the tokens jwtExpiry looks into.
const maxJWTLen = 64 << 10

// jwtExpiry returns the exp claim of a JWS in compact serialization
// (header.payload.signature), without verifying the signature: the expiry is
// only used to plan the next refresh, never to trust the token. It returns
// false for anything else (an opaque token, a JWE, a malformed payload, an
// exp that is not a positive number of seconds before the year 5000).
func jwtExpiry(tok string) (time.Time, bool) {
	if len(tok) > maxJWTLen || strings.Count(tok, ".") != 2 {
		return time.Time{}, false
	}
	first := strings.IndexByte(tok, '.')
	second := first + 1 + strings.IndexByte(tok[first+1:], '.')
	if first == 0 || second == first+1 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok[first+1:second], "="))
	if err != nil {
		return time.Time{}, false
	}
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || payload[0] != '{' {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	const maxExp = 95617584000 // 5000-01-01T00:00:00Z
	if err != nil || math.IsNaN(exp) || exp <= 0 || exp >= maxExp {
		return time.Time{}, false
	}
	sec, frac := math.Modf(exp)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}
