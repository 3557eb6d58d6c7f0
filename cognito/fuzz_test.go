package cognito

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeClaims checks that the unverified JWT decoder never panics,
// fails only with ErrMalformedJWT, never quotes its input in an error, and
// returns times inside the range it promises. The committed corpus is in
// testdata/fuzz/FuzzDecodeClaims; run the fuzzer with
//
//	go test ./cognito -run '^$' -fuzz FuzzDecodeClaims -fuzztime 30s
func FuzzDecodeClaims(f *testing.F) {
	f.Add(rawJWT(`{"sub":"s","cognito:username":"u","aud":"c","iat":1700000000,"exp":1700003600}`))
	f.Add(rawJWT(`{"username":"u","client_id":"c","exp":1.5e9,"aud":["a","b"]}`))
	f.Add(rawJWT(`{"exp":253402300799}`))
	f.Add("eyJjdHkiOiJKV1QifQ.a.b.c.d")
	f.Add("..")
	f.Add("a.b.c")
	max := time.Unix(maxNumericDate, 0)
	f.Fuzz(func(t *testing.T, jwt string) {
		c, err := DecodeClaims(jwt)
		if err != nil {
			if !errors.Is(err, ErrMalformedJWT) {
				t.Fatalf("error %v does not wrap ErrMalformedJWT", err)
			}
			if len(jwt) >= 16 && strings.Contains(err.Error(), jwt) {
				t.Fatalf("error quotes the token")
			}
			return
		}
		for _, tm := range []time.Time{c.IssuedAt, c.Expiry, c.AuthTime} {
			if !tm.IsZero() && (tm.Before(time.Unix(0, 0)) || tm.After(max)) {
				t.Fatalf("time %v out of range", tm)
			}
		}
		if life, ok := c.Lifetime(); ok && life <= 0 {
			t.Fatalf("Lifetime %v reported ok", life)
		}
		_ = c.PoolID()
	})
}
