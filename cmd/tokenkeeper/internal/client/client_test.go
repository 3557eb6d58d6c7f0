package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"golang.org/x/oauth2"
)

// serve runs an agent for a keeper with tokens "a" (refreshable) and
// "broken" (always fails permanently) on the given listener.
func serve(t *testing.T, ln net.Listener, secret string) (*tokenkeeper.Keeper, *agent.Server) {
	t.Helper()
	var srv atomic.Pointer[agent.Server]
	k, err := tokenkeeper.New(tokenkeeper.Config{OnEvent: func(e tokenkeeper.Event) {
		if s := srv.Load(); s != nil {
			s.Event(e)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := agent.New(agent.Options{Keeper: k, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(s)
	var n atomic.Int64
	if _, err := k.Add(tokenkeeper.TokenConfig{Name: "a", Source: tokenkeeper.SourceFunc(
		func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return (&oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", n.Add(1)), Expiry: time.Now().Add(time.Hour)}).
				WithExtra(map[string]any{"id_token": "idt"}), nil
		})}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Add(tokenkeeper.TokenConfig{Name: "broken", Source: tokenkeeper.SourceFunc(
		func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return nil, tokenkeeper.Permanent(errors.New("revoked"))
		})}); err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		hs.Close()
		<-done
		k.Close()
	})
	return k, s
}

func TestClientOverUnixSocket(t *testing.T) {
	dir, _ := os.MkdirTemp("", "tkc")
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "a.sock")
	ln, err := agent.Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, "")
	c := New("unix", sock, "")
	defer c.Close()
	ctx := context.Background()
	if c.BaseURL() != "http://localhost" {
		t.Errorf("BaseURL = %s", c.BaseURL())
	}
	if err := c.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx, "a", 0)
	if err != nil || tok.AccessToken != "tok-1" || tok.TokenType != "Bearer" || tok.IDToken != "idt" || tok.ExpiresAt.IsZero() {
		t.Fatalf("Token = %+v, %v", tok, err)
	}
	if tok, err := c.Token(ctx, "a", time.Minute); err != nil || tok.AccessToken != "tok-1" {
		t.Errorf("Token with min_valid = %+v, %v", tok, err)
	}
	if err := c.Activity(ctx); err != nil {
		t.Error(err)
	}
	sts, err := c.List(ctx)
	if err != nil || len(sts) != 2 || sts[0].Name != "a" || sts[0].State != "valid" || sts[0].Refreshes != 1 {
		t.Fatalf("List = %+v, %v", sts, err)
	}
	st, err := c.Refresh(ctx, "a")
	if err != nil || st.Refreshes != 2 {
		t.Fatalf("Refresh = %+v, %v", st, err)
	}

	_, err = c.Token(ctx, "nope", 0)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "unknown_token" || ae.Message == "" {
		t.Errorf("unknown token: %#v", err)
	}
	_, err = c.Token(ctx, "broken", 0)
	if !errors.As(err, &ae) || ae.Code != "reauth_required" {
		t.Errorf("broken token: %v", err)
	}
	if _, err := c.Refresh(ctx, "nope"); !errors.As(err, &ae) {
		t.Errorf("Refresh of an unknown token: %v", err)
	}
}

func TestEvents(t *testing.T) {
	ln, err := agent.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, srv := serve(t, ln, "s3cret-s3cret-s3cret-s3cret-s3cret")
	c := New("tcp", ln.Addr().String(), "s3cret-s3cret-s3cret-s3cret-s3cret")
	defer c.Close()
	got := make(chan Event, 100)
	done := make(chan error, 1)
	go func() { done <- c.Events(context.Background(), func(e Event) { got <- e }) }()
	// Refresh until the stream shows a success (the stream may connect
	// after the first one).
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("no succeeded event")
		}
		if _, err := c.Refresh(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
		for len(got) > 0 {
			if e := <-got; e.Kind == "succeeded" && e.Token == "a" && e.Seq > 0 {
				seen = true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close() // the agent ends the stream with a close event
	if err := <-done; err != nil {
		t.Errorf("Events after the agent closed: %v", err)
	}

	// A cancelled stream returns the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Events(ctx, func(Event) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Events: %v", err)
	}
	// A wrong secret.
	bad := New("tcp", ln.Addr().String(), "wrong-wrong-wrong-wrong-wrong-wrong")
	defer bad.Close()
	var ae *Error
	if err := bad.Events(context.Background(), func(Event) {}); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("Events with a wrong secret: %v", err)
	}
	if _, err := bad.List(context.Background()); !errors.As(err, &ae) || ae.Code != "unauthorized" {
		t.Errorf("List with a wrong secret: %v", err)
	}
}

func TestUnreachableAndGarbage(t *testing.T) {
	c := New("unix", filepath.Join(t.TempDir(), "none.sock"), "")
	defer c.Close()
	if _, err := c.List(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("no agent: %v", err)
	}
	if err := c.Events(context.Background(), func(Event) {}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("no agent, Events: %v", err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/tokens":
			w.Write([]byte("<html>not json</html>"))
		case "/v1/events":
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("event: succeeded\ndata: {\"kind\":\"succeeded\",\ndata: \"token\":\"a\"}\n\ndata: not json\n\n: comment\n\n"))
		default:
			w.WriteHeader(503)
			w.Write([]byte("down"))
		}
	}))
	defer ts.Close()
	g := New("tcp", ts.Listener.Addr().String(), "")
	defer g.Close()
	if _, err := g.List(context.Background()); err == nil {
		t.Error("garbage list accepted")
	}
	var ae *Error
	if err := g.Healthz(context.Background()); !errors.As(err, &ae) || ae.Status != 503 || ae.Error() != "agent answered HTTP 503" {
		t.Errorf("503 without a JSON body: %v", err)
	}
	var evs []Event
	if err := g.Events(context.Background(), func(e Event) { evs = append(evs, e) }); err != nil {
		t.Errorf("Events: %v", err)
	}
	if len(evs) != 1 || evs[0].Token != "a" {
		t.Errorf("multi-line data event: %+v", evs)
	}
	if (&Error{Status: 404, Code: "x", Message: "m"}).Error() != "agent: m (HTTP 404, x)" {
		t.Error("Error format")
	}
	if _, err := g.Token(context.Background(), "a\x7f", 0); err == nil {
		t.Error("token answer 503 accepted")
	}
	bad := &Client{base: "http://[::1", hc: http.DefaultClient}
	if err := bad.Healthz(context.Background()); err == nil {
		t.Error("bad URL accepted")
	}
	if err := bad.Events(context.Background(), func(Event) {}); err == nil {
		t.Error("bad URL accepted by Events")
	}
}
