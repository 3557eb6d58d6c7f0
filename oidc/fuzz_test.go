package oidc

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// Secrets the fuzz targets plant in answers ("$RT", "$CS" in a body are
// replaced by them).
const (
	fuzzRT = "RT-9f2c7e41a8b3d605"
	fuzzCS = "CS-5d1e8a20c47f93b6"
)

// FuzzParseTokenResponse feeds arbitrary answers to the token-response
// parser. Whatever the input: no panic; either a usable token or a typed
// error; never a secret in the error. The seed corpus is in
// testdata/fuzz/FuzzParseTokenResponse.
func FuzzParseTokenResponse(f *testing.F) {
	jwtTok := jwt(`{"exp":1740831300,"sub":"u"}`)
	for _, seed := range []struct {
		status int
		ct     string
		body   string
		ra     string
	}{
		{200, "application/json", `{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"$RT"}`, ""},
		{200, "application/json", `{"access_token":"` + jwtTok + `","token_type":"bearer","refresh_in":300}`, ""},
		{200, "application/x-www-form-urlencoded", `access_token=at-1&token_type=bearer&expires_in=60&refresh_token=$RT`, ""},
		{200, "text/html", `<!DOCTYPE html><html><head><title>Login</title></head><body>$RT</body></html>`, ""},
		{200, "application/json", `{"access_token":"at-1","refresh_token":"$RT","expi`, ""},
		{200, "application/json", `{"token_type":"bearer","refresh_token":"$RT"}`, ""},
		{200, "application/json", `{"access_token":"$CS","token_type":"mac"}`, ""},
		{200, "application/json", `{"access_token":"at-1","expires_in":-1,"refresh_in":"x"}`, ""},
		{200, "application/json", `{"access_token":"at-1","expires_in":1e999}`, ""},
		{400, "application/json", `{"error":"invalid_grant","error_description":"token $RT revoked"}`, ""},
		{401, "application/json", `{"error":"invalid_client","error_description":"secret $CS is wrong"}`, ""},
		{503, "text/html", `<html><body><h1>503 Service Unavailable</h1></body></html>`, "120"},
		{429, "application/json", `{"error":"slow_down"}`, "Sat, 01 Mar 2025 12:05:00 GMT"},
		{400, "application/x-www-form-urlencoded", `error=$RT&error_description=$CS`, ""},
		{200, "application/json", `{"access_token":"at-1","pad":"` + strings.Repeat("x", 4096) + `"}`, ""},
	} {
		f.Add(seed.status, seed.ct, []byte(seed.body), seed.ra)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{ClientID: "app", ClientSecret: fuzzCS, Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte, retryAfter string) {
		status = 100 + (status%500+500)%500
		body = []byte(strings.NewReplacer("$RT", fuzzRT, "$CS", fuzzCS).Replace(string(body)))
		h := http.Header{"Content-Type": {contentType}, "Retry-After": {retryAfter}}
		r := s.interpret(status, h, body, nil, now, []string{fuzzRT, fuzzCS})

		if (r.out == outcomeOK) != (r.err == nil) {
			t.Fatalf("outcome %v with error %v", r.out, r.err)
		}
		if status < 200 || status > 299 {
			if r.out != outcomeRejected {
				t.Fatalf("status %d: outcome %v, want rejected", status, r.out)
			}
		}
		if r.out == outcomeOK {
			checkToken(t, r.tok, now)
			return
		}
		re := r.err
		known := []error{ErrTokenEndpoint, ErrMalformedResponse, ErrMissingAccessToken, ErrUnsupportedTokenType}
		if !slices.ContainsFunc(known, func(e error) bool { return errors.Is(re, e) }) {
			t.Fatalf("error %v matches none of the package's errors", re)
		}
		if re.RetryAfter < 0 || re.RetryAfter > 24*time.Hour {
			t.Fatalf("RetryAfter %v", re.RetryAfter)
		}
		if re.Permanent && !(tokenkeeper.IsPermanentCode(re.Code) || re.Code == "" && status == 401 || errors.Is(re, ErrUnsupportedTokenType)) {
			t.Fatalf("permanent without a reason: %v", re)
		}
		if re.Code != "" && !validCode(re.Code) {
			t.Fatalf("invalid code %q kept", re.Code)
		}
		msg := re.Error()
		for _, sec := range append([]string{fuzzRT, fuzzCS}, tokenValues(body, contentType)...) {
			if len(sec) < 8 || strings.Contains(prose(re), sec) {
				continue // too short to be a secret, or part of our own words
			}
			if strings.Contains(msg, sec) {
				t.Fatalf("error %q contains the secret %q", msg, sec)
			}
		}
		for _, sec := range []string{fuzzRT, fuzzCS} {
			if strings.Contains(re.Body, sec) || strings.Contains(re.Description, sec) {
				t.Fatalf("body %q or description %q contains %q", re.Body, re.Description, sec)
			}
		}
	})
}

// prose is re's message without anything the server said: the words that
// are ours.
func prose(re *tokenkeeper.RefreshError) string {
	return (&tokenkeeper.RefreshError{Status: re.Status, Permanent: re.Permanent, RetryAfter: re.RetryAfter, Err: re.Err}).Error() +
		" " + ErrUnsupportedTokenType.Error() + " not Bearer"
}

// tokenValues returns the values of the token fields of a JSON or form
// body, as far as they can be decoded.
func tokenValues(body []byte, contentType string) []string {
	fields, err := decodeFields(body, contentType)
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		if v, ok := fields[k].(string); ok {
			out = append(out, v)
		}
	}
	return out
}

// checkToken asserts the invariants of a parsed token.
func checkToken(t *testing.T, tok *oauth2.Token, now time.Time) {
	t.Helper()
	if tok == nil || tok.AccessToken == "" {
		t.Fatalf("token %v without an access token", tok)
	}
	if tok.Type() != "Bearer" {
		t.Fatalf("token type %q accepted", tok.TokenType)
	}
	if !tok.Expiry.IsZero() && (!tok.Expiry.After(now) || tok.Expiry.Sub(now) > MaxLifetime) {
		t.Fatalf("expiry %v outside (now, now+1y]", tok.Expiry)
	}
	if ri := tok.Extra("refresh_in"); ri != nil {
		secs, ok := ri.(float64)
		if !ok || !(secs > 0) || secs > MaxLifetime.Seconds() {
			t.Fatalf("refresh_in %v (%T) passed on", ri, ri)
		}
		if !tok.Expiry.IsZero() && time.Duration(secs*float64(time.Second)) >= tok.Expiry.Sub(now) {
			t.Fatalf("refresh_in %v not before expiry %v", secs, tok.Expiry)
		}
	}
}

// FuzzJWTExpiry checks the JWT exp reader: no panic on any input, and an
// accepted expiry is in range. The second argument builds a well-formed
// token whose exp must be read back exactly. The seed corpus is in
// testdata/fuzz/FuzzJWTExpiry.
func FuzzJWTExpiry(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	for _, seed := range []struct {
		tok string
		exp int64
	}{
		{jwt(`{"exp":1740830400}`), 1740830400},
		{jwt(`{"exp":1.7408304e9,"iat":1}`), 1},
		{jwt(`{"exp":"1740830400"}`), 0},
		{jwt(`{"exp":-1}`), -1},
		{jwt(`{"exp":1e400}`), 95617584000},
		{enc([]byte(`{}`)) + "." + enc([]byte(`{"exp":`)) + ".x", 1 << 62},
		{"a.b.c.d.e", 7},
		{"opaque-token", 42},
		{"..", 0},
	} {
		f.Add(seed.tok, seed.exp)
	}
	f.Fuzz(func(t *testing.T, tok string, exp int64) {
		got, ok := jwtExpiry(tok)
		if got2, ok2 := jwtExpiry(tok); !got2.Equal(got) || ok2 != ok {
			t.Fatalf("not deterministic")
		}
		if ok && (got.Unix() < 0 || got.Unix() >= 95617584000) {
			t.Fatalf("jwtExpiry(%q) = %v out of range", tok, got)
		}
		if !ok && !got.IsZero() {
			t.Fatalf("jwtExpiry(%q) = %v with false", tok, got)
		}
		got, ok = jwtExpiry(jwt(fmt.Sprintf(`{"sub":"x","exp":%d}`, exp)))
		if want := exp > 0 && exp < 95617584000; ok != want || ok && got.Unix() != exp {
			t.Fatalf("exp %d read as %v, %v", exp, got, ok)
		}
	})
}
