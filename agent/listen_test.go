package agent

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{
		"0.0.0.0:0", ":0", "192.168.1.10:0", "10.0.0.1:0", "[::]:0", "example.com:0",
		"[fe80::1%lo]:0", "localhost.example.com:0",
	} {
		ln, err := Listen(addr)
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", addr)
			continue
		}
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Listen(%q): %v, want ErrNotLoopback", addr, err)
		}
	}
	for _, addr := range []string{"nope", "unix:"} {
		if ln, err := Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
}

func TestListenLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "LocalHost:0", "[::1]:0", "[::ffff:127.0.0.1]:0"} {
		ln, err := Listen(addr)
		if err != nil {
			if addr == "[::1]:0" && strings.Contains(err.Error(), "address") {
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			}
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		ip := ln.Addr().(*net.TCPAddr).IP
		if !ip.IsLoopback() {
			t.Errorf("Listen(%q) bound %v", addr, ip)
		}
		ln.Close()
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")
	ln, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	if got := ln.Addr().String(); got != path {
		t.Errorf("Addr %q, want %q", got, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left over in the directory: %v", entries)
	}

	// A second agent on the same socket is refused.
	if ln2, err := Listen("unix:" + path); !errors.Is(err, ErrSocketInUse) {
		if ln2 != nil {
			ln2.Close()
		}
		t.Errorf("second Listen: %v, want ErrSocketInUse", err)
	}

	// The agent answers over it, whatever Host the client sends: a browser
	// cannot reach a Unix socket.
	e := newEnv(t, envConfig{})
	srv := &http.Server{Handler: e.s.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	resp, err := client.Get("http://agent.sock/v1/tokens/alpha")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "SECRET-access-alpha-0") {
		t.Errorf("over the socket: %d %s", resp.StatusCode, body)
	}
	// But a foreign Origin is still refused.
	req, _ := http.NewRequest("GET", "http://agent.sock/v1/tokens", nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("foreign origin over the socket: %d", resp.StatusCode)
	}
	client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	<-done
	// Closing removed the socket file.
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
}

func TestListenUnixStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	// A dead agent's socket: bound, then closed without unlinking.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("unix:" + path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	ln.Close()
	ln.Close() // idempotent
}

func TestListenUnixRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "important")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen("unix:" + path); err == nil {
		ln.Close()
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("regular file was touched")
	}
	if ln, err := Listen("unix:" + filepath.Join(dir, "missing", "agent.sock")); err == nil {
		ln.Close()
		t.Error("Listen in a missing directory succeeded")
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "secret")
	s1, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 64 || strings.Trim(s1, "0123456789abcdef") != "" {
		t.Errorf("secret %q is not 32 hex-encoded bytes", s1)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v", di.Mode())
	}
	s2, err := LoadOrCreateSecret(path)
	if err != nil || s2 != s1 {
		t.Fatalf("second load: %q, %v", s2, err)
	}

	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	good := strings.Repeat("k", 40)
	if s, err := LoadOrCreateSecret(write("padded", "  "+good+"\n\n", 0o600)); err != nil || s != good {
		t.Errorf("padded secret: %q, %v", s, err)
	}
	for name, tt := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"readable":  {good, 0o640, "group or others"},
		"world":     {good, 0o604, "group or others"},
		"short":     {"abc", 0o600, "too short"},
		"empty":     {"", 0o600, "too short"},
		"spaces":    {strings.Repeat("a", 20) + " " + strings.Repeat("b", 20), 0o600, "space"},
		"non-ascii": {strings.Repeat("é", 20), 0o600, "non-ASCII"},
		"too large": {strings.Repeat("a", 5000), 0o600, "too large"},
	} {
		_, err := LoadOrCreateSecret(write(name, tt.content, tt.mode))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), good) {
			t.Errorf("%s: the error shows the secret", name)
		}
	}
	if _, err := LoadOrCreateSecret(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	blocker := write("file", "x", 0o600)
	if _, err := LoadOrCreateSecret(filepath.Join(blocker, "secret")); err == nil {
		t.Error("secret under a regular file")
	}
}
