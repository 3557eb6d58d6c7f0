package oidc

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// jwt builds an unsigned JWS-shaped token with the given payload.
func jwt(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestParseToken(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		body        string
		ct          string
		defaultLife time.Duration
		// want
		access    string
		refresh   string
		typ       string
		life      time.Duration // 0: no expiry
		refreshIn any           // Extra("refresh_in")
		warn      string        // substring of the log ("" = no warning)
		err       error
	}{
		{name: "minimal", body: `{"access_token":"a1","token_type":"Bearer","expires_in":3600}`,
			access: "a1", typ: "Bearer", life: time.Hour},
		{name: "lower-case bearer, refresh token", body: `{"access_token":"a1","token_type":"bearer","expires_in":60,"refresh_token":"r2"}`,
			access: "a1", refresh: "r2", typ: "bearer", life: time.Minute},
		{name: "missing token_type means Bearer", body: `{"access_token":"a1","expires_in":60}`,
			access: "a1", typ: "Bearer", life: time.Minute},
		{name: "string expires_in", body: `{"access_token":"a1","expires_in":"120"}`,
			access: "a1", typ: "Bearer", life: 2 * time.Minute},
		{name: "fractional expires_in", body: `{"access_token":"a1","expires_in":1.5}`,
			access: "a1", typ: "Bearer", life: 1500 * time.Millisecond},
		{name: "zero expires_in ignored", body: `{"access_token":"a1","expires_in":0}`,
			access: "a1", typ: "Bearer", warn: "expires_in is zero or negative"},
		{name: "negative expires_in falls back to default", body: `{"access_token":"a1","expires_in":-5}`, defaultLife: 10 * time.Minute,
			access: "a1", typ: "Bearer", life: 10 * time.Minute, warn: "expires_in is zero or negative"},
		{name: "garbage expires_in", body: `{"access_token":"a1","expires_in":"soon"}`,
			access: "a1", typ: "Bearer", warn: "expires_in is not a number"},
		{name: "object expires_in", body: `{"access_token":"a1","expires_in":{}}`,
			access: "a1", typ: "Bearer", warn: "expires_in is not a number"},
		{name: "null expires_in", body: `{"access_token":"a1","expires_in":null}`,
			access: "a1", typ: "Bearer"},
		{name: "ten years clamped", body: `{"access_token":"a1","expires_in":315360000}`,
			access: "a1", typ: "Bearer", life: MaxLifetime, warn: "exceeds a year"},
		{name: "beyond float range clamped", body: `{"access_token":"a1","expires_in":1e999}`,
			access: "a1", typ: "Bearer", life: MaxLifetime, warn: "exceeds a year"},
		{name: "JWT exp", body: fmt.Sprintf(`{"access_token":%q}`, jwt(fmt.Sprintf(`{"exp":%d}`, now.Add(15*time.Minute).Unix()))),
			typ: "Bearer", life: 15 * time.Minute},
		{name: "expires_in wins over JWT exp", body: fmt.Sprintf(`{"access_token":%q,"expires_in":60}`, jwt(fmt.Sprintf(`{"exp":%d}`, now.Add(15*time.Minute).Unix()))),
			typ: "Bearer", life: time.Minute},
		{name: "JWT exp in the past ignored", body: fmt.Sprintf(`{"access_token":%q}`, jwt(`{"exp":1000}`)), defaultLife: time.Hour,
			typ: "Bearer", life: time.Hour, warn: "not in the future"},
		{name: "JWT exp far away clamped", body: fmt.Sprintf(`{"access_token":%q}`, jwt(`{"exp":90000000000}`)),
			typ: "Bearer", life: MaxLifetime, warn: "more than a year away"},
		{name: "default lifetime", body: `{"access_token":"opaque"}`, defaultLife: 5 * time.Minute,
			access: "opaque", typ: "Bearer", life: 5 * time.Minute},
		{name: "refresh_in passed on", body: `{"access_token":"a1","expires_in":3600,"refresh_in":600}`,
			access: "a1", typ: "Bearer", life: time.Hour, refreshIn: 600.0},
		{name: "string refresh_in passed on as seconds", body: `{"access_token":"a1","expires_in":3600,"refresh_in":"600"}`,
			access: "a1", typ: "Bearer", life: time.Hour, refreshIn: 600.0},
		{name: "refresh_in after expiry dropped", body: `{"access_token":"a1","expires_in":60,"refresh_in":600}`,
			access: "a1", typ: "Bearer", life: time.Minute, warn: "refresh_in is not before expiry"},
		{name: "negative refresh_in dropped", body: `{"access_token":"a1","expires_in":60,"refresh_in":-1}`,
			access: "a1", typ: "Bearer", life: time.Minute, warn: "refresh_in is not a positive number"},
		{name: "huge refresh_in without expiry dropped", body: `{"access_token":"a1","refresh_in":1e12}`,
			access: "a1", typ: "Bearer", warn: "refresh_in exceeds a year"},
		{name: "form-encoded", ct: "application/x-www-form-urlencoded", body: `access_token=a1&token_type=bearer&expires_in=60&refresh_token=r2&scope=x`,
			access: "a1", refresh: "r2", typ: "bearer", life: time.Minute},
		{name: "text/plain form", ct: "text/plain; charset=utf-8", body: `access_token=a1&expires_in=60`,
			access: "a1", typ: "Bearer", life: time.Minute},
		{name: "text/plain JSON", ct: "text/plain", body: `{"access_token":"a1","expires_in":60}`,
			access: "a1", typ: "Bearer", life: time.Minute},
		{name: "no content type", ct: "", body: `  {"access_token":"a1","expires_in":60}  `,
			access: "a1", typ: "Bearer", life: time.Minute},

		{name: "missing access_token", body: `{"token_type":"bearer","expires_in":60}`, err: ErrMissingAccessToken},
		{name: "empty access_token", body: `{"access_token":""}`, err: ErrMissingAccessToken},
		{name: "numeric access_token", body: `{"access_token":12345}`, err: ErrMalformedResponse},
		{name: "numeric refresh_token", body: `{"access_token":"a1","refresh_token":7}`, err: ErrMalformedResponse},
		{name: "numeric token_type", body: `{"access_token":"a1","token_type":1}`, err: ErrMalformedResponse},
		{name: "mac", body: `{"access_token":"a1","token_type":"mac"}`, err: ErrUnsupportedTokenType},
		{name: "DPoP", body: `{"access_token":"a1","token_type":"DPoP"}`, err: ErrUnsupportedTokenType},
		{name: "HTML page", ct: "text/html", body: "<!DOCTYPE html>\n<html><body>Sign in</body></html>", err: ErrMalformedResponse},
		{name: "truncated", body: `{"access_token":"a1","expi`, err: ErrMalformedResponse},
		{name: "trailing garbage", body: `{"access_token":"a1"} x`, err: ErrMalformedResponse},
		{name: "array", body: `[{"access_token":"a1"}]`, err: ErrMalformedResponse},
		{name: "null", body: `null`, err: ErrMalformedResponse},
		{name: "empty", body: ``, err: ErrMalformedResponse},
		{name: "bad form", ct: "application/x-www-form-urlencoded", body: `access_token=%zz`, err: ErrMalformedResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			s := mustNew(t, Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"},
				DefaultLifetime: tt.defaultLife, Logger: logs.logger()})
			ct := tt.ct
			if ct == "" && !strings.HasPrefix(tt.name, "no content type") {
				ct = "application/json"
			}
			tok, err := s.parseToken([]byte(tt.body), ct, now, nil)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.access != "" && tok.AccessToken != tt.access {
				t.Errorf("access token %q, want %q", tok.AccessToken, tt.access)
			}
			if tok.RefreshToken != tt.refresh || tok.TokenType != tt.typ {
				t.Errorf("refresh %q type %q, want %q %q", tok.RefreshToken, tok.TokenType, tt.refresh, tt.typ)
			}
			var life time.Duration
			if !tok.Expiry.IsZero() {
				life = tok.Expiry.Sub(now)
			}
			if life != tt.life {
				t.Errorf("lifetime %v, want %v", life, tt.life)
			}
			if got := tok.Extra("refresh_in"); got != tt.refreshIn {
				t.Errorf("refresh_in extra %v (%T), want %v", got, got, tt.refreshIn)
			}
			log := logs.String()
			if tt.warn == "" && log != "" {
				t.Errorf("unexpected log %q", log)
			}
			if tt.warn != "" && (!strings.Contains(log, tt.warn) || !strings.Contains(log, "level=WARN")) {
				t.Errorf("log %q, want a warning %q", log, tt.warn)
			}
			if strings.Contains(log, "a1") {
				t.Errorf("log %q contains the token", log)
			}
		})
	}
}

// Extras such as id_token and scope ride along on the token.
func TestParseTokenExtras(t *testing.T) {
	s := mustNew(t, Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}})
	tok, err := s.parseToken([]byte(`{"access_token":"a","id_token":"eyJ.x.y","scope":"openid email","n":{"deep":[1,2]}}`),
		"application/json", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("id_token") != "eyJ.x.y" || tok.Extra("scope") != "openid email" {
		t.Errorf("extras id_token=%v scope=%v", tok.Extra("id_token"), tok.Extra("scope"))
	}
	if n, ok := tok.Extra("n").(map[string]any); !ok || fmt.Sprint(n["deep"]) != "[1 2]" {
		t.Errorf("nested extra %v", tok.Extra("n"))
	}
}

func TestInterpretStatuses(t *testing.T) {
	s := mustNew(t, Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}})
	now := time.Now()
	tests := []struct {
		status int
		body   string
		out    outcome
	}{
		{200, `{"access_token":"a"}`, outcomeOK},
		{201, `{"access_token":"a"}`, outcomeOK},
		{200, `nope`, outcomeUnknown},
		{302, ``, outcomeRejected},
		{400, `{"error":"invalid_grant"}`, outcomeRejected},
		{502, `<html>`, outcomeRejected},
	}
	for _, tt := range tests {
		r := s.interpret(tt.status, http.Header{"Content-Type": {"application/json"}}, []byte(tt.body), nil, now, nil)
		if r.out != tt.out {
			t.Errorf("status %d body %q: outcome %v, want %v", tt.status, tt.body, r.out, tt.out)
		}
	}
	r := s.interpret(200, http.Header{}, []byte(`{"acc`), errors.New("connection reset"), now, nil)
	if r.out != outcomeUnknown || !errors.Is(r.err, ErrMalformedResponse) {
		t.Errorf("read error: %v %v", r.out, r.err)
	}
}

func TestErrorCodeSanitized(t *testing.T) {
	s := mustNew(t, Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}})
	tests := []struct {
		body, code, desc string
	}{
		{`{"error":"invalid_grant","error_description":"line1\nline2"}`, "invalid_grant", "line1 line2"},
		{`{"error":"bad\"code"}`, "", ""},
		{`{"error":"` + strings.Repeat("x", 100) + `"}`, "", ""},
		{`{"error":42,"error_description":["x"]}`, "", ""},
		{`{"error":"invalid_request","error_description":"` + strings.Repeat("é", 300) + `"}`, "invalid_request", strings.Repeat("é", 100) + "…"},
	}
	for _, tt := range tests {
		re := s.errorAnswer(400, http.Header{"Content-Type": {"application/json"}}, []byte(tt.body), time.Now(), nil)
		if re.Code != tt.code || re.Description != tt.desc {
			t.Errorf("body %.40q: code %q desc %q, want %q %q", tt.body, re.Code, re.Description, tt.code, tt.desc)
		}
	}
}

func TestJWTExpiry(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name string
		tok  string
		want time.Time // zero: not ok
	}{
		{"integer", jwt(`{"exp":1740830400}`), time.Unix(1740830400, 0)},
		{"fractional", jwt(`{"exp":1740830400.5}`), time.Unix(1740830400, 5e8)},
		{"string number", jwt(`{"exp":"1740830400"}`), time.Unix(1740830400, 0)},
		{"padded", enc([]byte(`{}`)) + "." + base64.URLEncoding.EncodeToString([]byte(`{"exp":1740830400}`)) + ".sig", time.Unix(1740830400, 0)},
		{"no exp", jwt(`{"sub":"x"}`), time.Time{}},
		{"zero exp", jwt(`{"exp":0}`), time.Time{}},
		{"negative exp", jwt(`{"exp":-5}`), time.Time{}},
		{"year 5000", jwt(`{"exp":95617584000}`), time.Time{}},
		{"huge exp", jwt(`{"exp":1e400}`), time.Time{}},
		{"exp not a number", jwt(`{"exp":"soon"}`), time.Time{}},
		{"exp object", jwt(`{"exp":{}}`), time.Time{}},
		{"payload not JSON", enc([]byte("{}")) + "." + enc([]byte("hello")) + ".sig", time.Time{}},
		{"payload array", jwt(`[1]`), time.Time{}},
		{"bad base64", "a.!!!.c", time.Time{}},
		{"opaque", "2YotnFZFEjr1zCsicMWpAA", time.Time{}},
		{"two parts", "a.b", time.Time{}},
		{"JWE", "a.b.c.d.e", time.Time{}},
		{"empty header", "." + enc([]byte(`{"exp":1}`)) + ".s", time.Time{}},
		{"empty payload", "a..s", time.Time{}},
		{"too long", jwt(`{"exp":1740830400,"pad":"` + strings.Repeat("x", maxJWTLen) + `"}`), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := jwtExpiry(tt.tok)
			if ok != !tt.want.IsZero() || !got.Equal(tt.want) {
				t.Errorf("jwtExpiry = %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
}
