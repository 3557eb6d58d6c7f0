package execsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "helper.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRefreshSuccess(t *testing.T) {
	dir := t.TempDir()
	// The helper echoes what it was given, so the test can check stdin,
	// the environment and the working directory.
	p := script(t, `
cat > "$OUT/stdin.json"
echo "$TOKENKEEPER_TOKEN $EXTRA $(pwd)" > "$OUT/env.txt"
printf '{"access_token":"at-1","expires_in":60,"refresh_token":"rt-2","id_token":"idt"}'`)
	s, err := New(Config{Name: "api", Command: []string{p}, Env: map[string]string{"OUT": dir, "EXTRA": "x"}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != `execsource("`+p+`")` {
		t.Errorf("String = %s", s)
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	before := time.Now()
	tok, err := s.Refresh(context.Background(), &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-1", Expiry: exp, TokenType: "Bearer"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "at-1" || tok.RefreshToken != "rt-2" || tok.TokenType != "Bearer" || tok.Extra("id_token") != "idt" {
		t.Errorf("token = %+v", tok)
	}
	if d := tok.Expiry.Sub(before); d < 59*time.Second || d > 61*time.Second {
		t.Errorf("expiry in %v", d)
	}
	in, _ := os.ReadFile(filepath.Join(dir, "stdin.json"))
	if want := `{"access_token":"at-0","token_type":"Bearer","refresh_token":"rt-1","expires_at":"2030-01-02T03:04:05Z"}`; string(in) != want {
		t.Errorf("stdin = %s, want %s", in, want)
	}
	envTxt, _ := os.ReadFile(filepath.Join(dir, "env.txt"))
	real, _ := filepath.EvalSymlinks(dir)
	if got := strings.TrimSpace(string(envTxt)); got != "api x "+dir && got != "api x "+real {
		t.Errorf("env = %q", got)
	}
	// No current token: stdin is {}.
	if _, err := s.Refresh(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if in, _ := os.ReadFile(filepath.Join(dir, "stdin.json")); string(in) != "{}" {
		t.Errorf("stdin without a token = %s", in)
	}
}

func TestParse(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		out     string
		wantErr string
		check   func(*oauth2.Token) bool
	}{
		{`{"access_token":"a","expires_at":"2025-01-01T01:00:00Z","token_type":"DPoP"}`, "",
			func(t *oauth2.Token) bool { return t.Expiry.Equal(now.Add(time.Hour)) && t.TokenType == "DPoP" }},
		{`{"access_token":"a"}`, "", func(t *oauth2.Token) bool { return t.Expiry.IsZero() && t.TokenType == "Bearer" }},
		{`{"access_token":"a","expires_in":"90"}`, "", func(t *oauth2.Token) bool { return t.Expiry.Equal(now.Add(90 * time.Second)) }},
		{`{"access_token":5}`, "output is not a JSON token: field access_token has the wrong type", nil},
		{`{"access_token":"a","expires_in":1.5}`, "", func(t *oauth2.Token) bool { return t.Expiry.Equal(now.Add(1500 * time.Millisecond)) }},
		{`{"access_token":"a","expires_in":0}`, `expires_in "0" is not a number of seconds`, nil},
		{`{"access_token":"a","expires_in":1e12}`, `expires_in "1e12" is not a number of seconds`, nil},
		{`{"access_token":"a","expires_at":"tomorrow"}`, `expires_at "tomorrow" is not an RFC 3339 time`, nil},
		{`{"token_type":"Bearer"}`, "output has no access_token", nil},
		{`not json at all`, "output is not a JSON token: syntax error at byte 2", nil},
		{``, "output is not a JSON token: no output", nil},
		{`{"access_token":"secret-value"`, "output is not a JSON token: unreadable", nil},
	}
	for _, tt := range tests {
		tok, err := parse([]byte(tt.out), now, "prog")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parse(%s) error = %v, want %q", tt.out, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret-value") {
				t.Errorf("error leaks the output: %v", err)
			}
			continue
		}
		if err != nil || !tt.check(tok) {
			t.Errorf("parse(%s) = %+v, %v", tt.out, tok, err)
		}
	}
}

func TestRefreshFailures(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		timeout   time.Duration
		permanent bool
		want      string
	}{
		{"transient exit", `echo "temporary: the server is busy" >&2; exit 1`, 0, false, "exited with status 1: temporary: the server is busy"},
		{"reauth exit", `echo 'need login' >&2; exit 77`, 0, true, "exited with status 77: need login"},
		{"secrets scrubbed", `echo "bad refresh_token=rt-1 and at-0" >&2; exit 2`, 0, false, "exited with status 2: bad refresh_token=[redacted] and [redacted]"},
		{"no stderr", `exit 3`, 0, false, "exited with status 3"},
		{"timeout", `sleep 5`, 50 * time.Millisecond, false, "context deadline exceeded"},
		{"huge output", `yes '{}' | head -c 2000000`, 0, false, "printed more than 1048576 bytes"},
		{"bad output", `echo '<html>'`, 0, false, "output is not a JSON token"},
		{"long stderr keeps its end", `i=0; while [ $i -lt 600 ]; do echo "noise line $i" >&2; i=$((i+1)); done; echo "the real reason" >&2; exit 1`, 0, false, ": the real reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Command: []string{script(t, tt.body)}, Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Refresh(context.Background(), &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-1"})
			var re *tokenkeeper.RefreshError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RefreshError", err)
			}
			if re.Permanent != tt.permanent || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v (permanent %v), want %q (permanent %v)", err, re.Permanent, tt.want, tt.permanent)
			}
			if c := tokenkeeper.Classify(err); c.Permanent != tt.permanent {
				t.Errorf("Classify: permanent %v", c.Permanent)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("empty command accepted")
	}
	if _, err := New(Config{Command: []string{"x"}, Timeout: -1}); err == nil {
		t.Error("negative timeout accepted")
	}
	s, _ := New(Config{Command: []string{filepath.Join(t.TempDir(), "missing")}})
	if _, err := s.Refresh(context.Background(), nil); err == nil || tokenkeeper.Classify(err).Permanent {
		t.Errorf("missing program: %v", err)
	}
}
