package agent

import (
	"net/http"
	"strings"
	"testing"
)

func TestAllowedHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost":              true,
		"LOCALHOST:8377":         true,
		"127.0.0.1":              true,
		"127.0.0.1:8377":         true,
		"127.1.2.3:80":           true,
		"[::1]":                  true,
		"[::1]:8377":             true,
		"[::ffff:127.0.0.1]:80":  true,
		"":                       false,
		":8377":                  false,
		"evil.example":           false,
		"evil.example:8377":      false,
		"localhost.evil.example": false,
		"127.0.0.1.nip.io":       false,
		"0.0.0.0:8377":           false,
		"10.0.0.1":               false,
		"[::]:80":                false,
		"[::1":                   false,
		"[::1]x":                 false,
		"::1":                    false,
		"127.0.0.1:":             false,
		"127.0.0.1:abc":          false,
		"127.0.0.1:1234567":      false,
		"[fe80::1%lo]:80":        false,
	} {
		if got := allowedHost(host); got != want {
			t.Errorf("allowedHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestGuards(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	// A page session cookie, as POST /v1/session sets it.
	status, hdr, _ := e.do(t, "POST", "/v1/session", "")
	if status != http.StatusNoContent {
		t.Fatalf("login: %d", status)
	}
	cookie := hdr.Get("Set-Cookie")
	if cookie == "" || strings.Contains(cookie, testSecret) {
		t.Fatalf("Set-Cookie %q", cookie)
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("cookie lacks %s: %s", attr, cookie)
		}
	}
	cookie = cookie[:strings.IndexByte(cookie, ';')]
	name := cookie[:strings.IndexByte(cookie, '=')]

	tests := []struct {
		name       string
		method     string
		path       string
		opts       []reqOpt
		wantStatus int
		wantCode   string
	}{
		{"bearer", "GET", "/v1/tokens/alpha", nil, 200, ""},
		{"lower-case scheme", "GET", "/v1/tokens/alpha", []reqOpt{withHeader("Authorization", "bearer "+testSecret)}, 200, ""},
		{"no secret", "GET", "/v1/tokens/alpha", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"wrong secret", "GET", "/v1/tokens/alpha", []reqOpt{withHeader("Authorization", "Bearer "+strings.Repeat("0", len(testSecret)))}, 401, CodeUnauthorized},
		{"short secret", "GET", "/v1/tokens/alpha", []reqOpt{withHeader("Authorization", "Bearer x")}, 401, CodeUnauthorized},
		{"basic auth", "GET", "/v1/tokens/alpha", []reqOpt{withHeader("Authorization", "Basic "+testSecret)}, 401, CodeUnauthorized},
		{"cookie cannot fetch a token", "GET", "/v1/tokens/alpha", []reqOpt{noAuth(), withHeader("Cookie", cookie)}, 401, CodeUnauthorized},
		{"cookie lists tokens", "GET", "/v1/tokens", []reqOpt{noAuth(), withHeader("Cookie", cookie)}, 200, ""},
		{"cookie reads overview", "GET", "/v1/overview", []reqOpt{noAuth(), withHeader("Cookie", cookie)}, 200, ""},
		{"stale cookie", "GET", "/v1/tokens", []reqOpt{noAuth(), withHeader("Cookie", name+"=0000")}, 401, CodeUnauthorized},
		{"cookie cannot log in", "POST", "/v1/session", []reqOpt{noAuth(), withHeader("Cookie", cookie)}, 401, CodeUnauthorized},
		{"list needs secret", "GET", "/v1/tokens", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"metrics need secret", "GET", "/metrics", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"events need secret", "GET", "/v1/events", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"readyz needs secret", "GET", "/readyz", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"refresh needs secret", "POST", "/v1/tokens/alpha/refresh", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"activity needs secret", "POST", "/v1/activity", []reqOpt{noAuth()}, 401, CodeUnauthorized},
		{"healthz is open", "GET", "/healthz", []reqOpt{noAuth()}, 200, ""},
		{"page is open", "GET", "/", []reqOpt{noAuth()}, 200, ""},
		{"logout is open", "DELETE", "/v1/session", []reqOpt{noAuth()}, 204, ""},
		{"foreign host", "GET", "/v1/tokens/alpha", []reqOpt{withHost("evil.example:8377")}, 421, CodeBadHost},
		{"foreign host on healthz", "GET", "/healthz", []reqOpt{withHost("evil.example")}, 421, CodeBadHost},
		{"foreign host on page", "GET", "/", []reqOpt{withHost("rebind.evil.example")}, 421, CodeBadHost},
		{"localhost host", "GET", "/v1/tokens/alpha", []reqOpt{withHost("localhost:1")}, 200, ""},
		{"foreign origin", "GET", "/v1/tokens/alpha", []reqOpt{withHeader("Origin", "http://evil.example")}, 403, CodeForeignOrigin},
		{"other port origin", "GET", "/v1/tokens", []reqOpt{withHost("127.0.0.1:1"), withHeader("Origin", "http://127.0.0.1:2")}, 403, CodeForeignOrigin},
		{"null origin", "POST", "/v1/activity", []reqOpt{withHeader("Origin", "null")}, 403, CodeForeignOrigin},
		{"https origin", "GET", "/v1/tokens", []reqOpt{withHost("127.0.0.1:1"), withHeader("Origin", "https://127.0.0.1:1")}, 403, CodeForeignOrigin},
		{"same origin", "GET", "/v1/tokens", []reqOpt{withHost("127.0.0.1:1"), withHeader("Origin", "http://127.0.0.1:1")}, 200, ""},
		{"cross-site fetch", "GET", "/v1/tokens", []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}, 403, CodeForeignOrigin},
		{"same-site fetch", "GET", "/v1/tokens", []reqOpt{withHeader("Sec-Fetch-Site", "same-site")}, 403, CodeForeignOrigin},
		{"same-origin fetch", "GET", "/v1/tokens", []reqOpt{withHeader("Sec-Fetch-Site", "same-origin")}, 200, ""},
		{"cross-site link to the page", "GET", "/", []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}, 200, ""},
		{"no such endpoint", "GET", "/v2/whatever", nil, 404, CodeNotFound},
		{"wrong method", "DELETE", "/v1/tokens/alpha", nil, 405, CodeMethodNotAllowed},
		{"wrong method on list", "POST", "/v1/tokens", nil, 405, CodeMethodNotAllowed},
		{"GET on refresh", "GET", "/v1/tokens/alpha/refresh", nil, 405, CodeMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := e.do(t, tt.method, tt.path, "", tt.opts...)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", status, tt.wantStatus, body)
			}
			if tt.wantCode != "" && errCode(t, body) != tt.wantCode {
				t.Errorf("code %q, want %q", errCode(t, body), tt.wantCode)
			}
			if status == 401 && hdr.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if status == 405 && hdr.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if strings.Contains(body, "SECRET") && tt.path != "/v1/tokens/alpha" {
				t.Errorf("a token value in %s: %s", tt.path, body)
			}
		})
	}
}

func TestNoSecretConfigured(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, path := range []string{"/v1/tokens/alpha", "/v1/tokens", "/metrics", "/readyz"} {
		if status, _, body := e.do(t, "GET", path, "", noAuth()); status != 200 {
			t.Errorf("%s: %d %s", path, status, body)
		}
	}
	status, hdr, _ := e.do(t, "POST", "/v1/session", "", noAuth())
	if status != 204 || hdr.Get("Set-Cookie") != "" {
		t.Errorf("login without a secret: %d, cookie %q", status, hdr.Get("Set-Cookie"))
	}
	// The Host check still applies on TCP.
	if status, _, _ := e.do(t, "GET", "/v1/tokens", "", withHost("evil.example")); status != 421 {
		t.Errorf("foreign host: %d", status)
	}
}

func TestConstantTimeEqual(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{{"", "", true}, {"abc", "abc", true}, {"abc", "abd", false}, {"abc", "ab", false}, {"", "a", false}} {
		if got := constantTimeEqual(tt.a, tt.b); got != tt.want {
			t.Errorf("constantTimeEqual(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}
