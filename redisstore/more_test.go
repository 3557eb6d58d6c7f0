package redisstore

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

type redisErrorString string

func (e redisErrorString) Error() string { return string(e) }
func (redisErrorString) RedisError()     {}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{redisErrorString("LOADING Redis is loading the dataset in memory"), true},
		{redisErrorString("READONLY You can't write against a read only replica."), true},
		{redisErrorString("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{redisErrorString("ERR unknown command"), false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
	} {
		if got := unavailable(tc.err); got != tc.want {
			t.Errorf("unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Without Coordinate, keepers that refresh on their own still never
// overwrite a newer token: the later Save fails and its keeper installs the
// stored token.
func TestPlainStoreConflictInstallsStored(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, false)
	opts := Options{Prefix: "plain:"}
	seed(t, newStore(t, srv, opts), p, "x")
	a := newStore(t, srv, opts)
	b := newStore(t, srv, opts)
	ka := newKeeper(t, a, tokenkeeper.Policy{})
	kb := newKeeper(t, b, tokenkeeper.Policy{})
	ha, err := ka.Add(tokenkeeper.TokenConfig{Name: "x", Source: p.source("x", "a")})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := kb.Add(tokenkeeper.TokenConfig{Name: "x", Source: p.source("x", "b")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// b's watcher must not learn of a's token before b saves: hold it off.
	eb := b.entry("x")
	eb.sem <- struct{}{}
	ta, err := ha.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-eb.sem
	if _, err := hb.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "b's keeper to install a's token", func() bool {
		tok, err := hb.TokenContext(ctx)
		return err == nil && tok.AccessToken == ta.AccessToken
	})
	if b.Status().Conflicts != 1 {
		t.Errorf("b status %+v", b.Status())
	}
	if got, _ := a.Load(ctx, "x"); got.AccessToken != ta.AccessToken {
		t.Error("the newer token was overwritten")
	}
}

// A per-token Rotates overrides Options.NonRotating.
func TestRotatesOption(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, false)
	s := newStore(t, srv, Options{Prefix: "rotopt:", NonRotating: true, ProbeInterval: 20 * time.Millisecond})
	first := seed(t, s, p, "x")
	rotating := s.Coordinate(p.source("x", "r"), "x", Rotates(true))
	srv.stop()
	eventually(t, 5*time.Second, "degraded", func() bool {
		_, _ = s.Load(context.Background(), "x")
		return s.Degraded()
	})
	if _, err := rotating.Refresh(context.Background(), first); !errors.Is(err, ErrUnavailable) {
		t.Errorf("rotating token refreshed without Redis: %v", err)
	}
	other := s.Coordinate(p.source("y", "r"), "y", Rotates(false))
	p.seed("y")
	if _, err := other.Refresh(context.Background(), &oauth2.Token{AccessToken: "a", RefreshToken: "rt-y-2"}); err != nil {
		t.Errorf("non-rotating token not refreshed without Redis: %v", err)
	}
}

// Redis restarts empty: the token a process holds is written back, at a
// version above the ones seen before, and a deletion is not undone.
func TestDataLossReseeds(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	opts := Options{Prefix: "loss:", ProbeInterval: 20 * time.Millisecond, ResyncInterval: 100 * time.Millisecond}
	s := newStore(t, srv, opts)
	seed(t, s, p, "x")
	k := newKeeper(t, s, tokenkeeper.Policy{})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "x", Source: s.Coordinate(p.source("x", "s"), "x")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var tok *oauth2.Token
	for range 2 {
		if tok, err = h.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	srv.stop()
	srv.restart()
	reader := newStore(t, srv, opts)
	eventually(t, 5*time.Second, "the token to be written back", func() bool {
		got, err := reader.Load(ctx, "x")
		return err == nil && got.AccessToken == tok.AccessToken
	})
	if v := storedVersion(t, reader, "x"); v != 4 {
		t.Errorf("version after the write-back = %d, want 4 (above the 3 seen before)", v)
	}
	if s.Status().WriteBacks != 1 {
		t.Errorf("status %+v", s.Status())
	}
	// A deletion stays.
	if err := reader.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the deletion to be seen", func() bool {
		e := s.entry("x")
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.version == 5 && e.tok == nil
	})
	if _, err := reader.Load(ctx, "x"); !errors.Is(err, tokenkeeper.ErrNotFound) {
		t.Errorf("deleted token came back: %v", err)
	}
}

// writeBack gives way to a holder of the lock and to a newer version.
func TestWriteBackGivesWay(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, false)
	s := newStore(t, srv, Options{Prefix: "wbway:"})
	seed(t, s, p, "x")
	ctx := context.Background()
	e := s.entry("x")
	st, err := s.read(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	mine := &oauth2.Token{AccessToken: "mine", Expiry: time.Now().Add(2 * time.Hour)}
	if err := s.c.Set(ctx, s.lockKey("x"), "other", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	s.writeBack(ctx, e, mine, st)
	if v := storedVersion(t, s, "x"); v != 1 {
		t.Errorf("wrote under another's lock (version %d)", v)
	}
	s.c.Del(ctx, s.lockKey("x"))
	st.version = 0 // stale
	s.writeBack(ctx, e, mine, st)
	if v := storedVersion(t, s, "x"); v != 1 {
		t.Errorf("wrote over a newer version (version %d)", v)
	}
	if s.Status().WriteBacks != 0 {
		t.Error("write-back counted")
	}
}
