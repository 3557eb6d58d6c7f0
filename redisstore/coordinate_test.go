package redisstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// seed stores the first token of name through s.
func seed(t testing.TB, s *Store, p *idp, name string) *oauth2.Token {
	t.Helper()
	tok := p.seed(name)
	if err := s.Save(context.Background(), name, tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

type result struct {
	tok *oauth2.Token
	err error
}

func refreshAsync(src tokenkeeper.Source, cur *oauth2.Token, timeout time.Duration) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		tok, err := src.Refresh(ctx, cur)
		ch <- result{tok, err}
	}()
	return ch
}

func storedVersion(t testing.TB, s *Store, name string) int64 {
	t.Helper()
	v, err := s.c.HGet(context.Background(), s.tokKey(name), "v").Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return v
}

// Through a keeper: one call to the source, one write.
func TestCoordinateThroughKeeper(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	s := newStore(t, srv, Options{Prefix: "one:"})
	seed(t, s, p, "a")
	k := newKeeper(t, s, tokenkeeper.Policy{NoJitter: true})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "a", Source: s.Coordinate(p.source("a", "k"), "a")})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := h.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.total() != 1 || tok.AccessToken != p.latest("a") {
		t.Fatalf("source calls = %d, token %q, want 1 call and %q", p.total(), tok.AccessToken, p.latest("a"))
	}
	if v := storedVersion(t, s, "a"); v != 2 {
		t.Errorf("stored version = %d, want 2", v)
	}
	st := s.Status()
	if st.Writes != 2 || st.SourceCalls != 1 {
		t.Errorf("writes = %d, source calls = %d; want 2 (seed + refresh) and 1", st.Writes, st.SourceCalls)
	}
	got, err := newStore(t, srv, Options{Prefix: "one:"}).Load(context.Background(), "a")
	if err != nil || got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken {
		t.Errorf("stored %v (%v), want the refreshed token", got, err)
	}
}

// A refresh from an old token joins the newer stored one: no source call.
func TestCoordinateJoinsNewerToken(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	a := newStore(t, srv, Options{Prefix: "join:"})
	b := newStore(t, srv, Options{Prefix: "join:"})
	first := seed(t, a, p, "x")
	if _, err := b.Load(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ta, err := a.Coordinate(p.source("x", "a"), "x").Refresh(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Coordinate(p.source("x", "b"), "x").Refresh(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if tb.AccessToken != ta.AccessToken || p.total() != 1 {
		t.Fatalf("b got %q after %d source calls, want a's %q after 1", tb.AccessToken, p.total(), ta.AccessToken)
	}
	if b.Status().Joined != 1 {
		t.Errorf("joined = %d, want 1", b.Status().Joined)
	}
	// A token the store never held (an application's initial token), older
	// than the stored one, also joins it.
	old := &oauth2.Token{AccessToken: "initial", RefreshToken: first.RefreshToken, Expiry: time.Now().Add(time.Minute)}
	tc, err := newStore(t, srv, Options{Prefix: "join:"}).Coordinate(p.source("x", "c"), "x").Refresh(ctx, old)
	if err != nil || tc.AccessToken != ta.AccessToken {
		t.Fatalf("initial token: got %v, %v; want the stored token", tc, err)
	}
}

// A refresh that finds the lock held waits for the holder's token.
func TestCoordinateWaitsForHolder(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	a := newStore(t, srv, Options{Prefix: "wait:", LockTTL: 5 * time.Second})
	b := newStore(t, srv, Options{Prefix: "wait:", LockTTL: 5 * time.Second})
	first := seed(t, a, p, "x")
	ctx := context.Background()
	if err := a.c.Set(ctx, a.lockKey("x"), "holder", 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	done := refreshAsync(b.Coordinate(p.source("x", "b"), "x"), first, 10*time.Second)
	eventually(t, 5*time.Second, "b waiting", func() bool { return b.Status().Waits == 1 })

	// The holder finishes: it writes under its lock.
	next, err := p.refresh(ctx, "x", "holder", first)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.commit(ctx, "x", "holder", 1, next); err != nil || v != 2 {
		t.Fatalf("holder's commit: %d, %v", v, err)
	}
	r := <-done
	if r.err != nil || r.tok.AccessToken != next.AccessToken {
		t.Fatalf("waiter got %v, %v; want the holder's token", r.tok, r.err)
	}
	if p.total() != 1 || b.Status().Joined != 1 || b.Status().SourceCalls != 0 {
		t.Errorf("source calls %d, b status %+v", p.total(), b.Status())
	}
	if n, _ := a.c.Exists(ctx, a.lockKey("x")).Result(); n != 0 {
		t.Error("the commit did not release the lock")
	}
}

// A holder that never finishes loses the lock when its lease runs out, and
// a waiter takes over within one lease.
func TestCoordinateTakeover(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	var log eventLog
	b := newStore(t, srv, Options{Prefix: "takeover:", LockTTL: 300 * time.Millisecond, OnEvent: log.add})
	first := seed(t, b, p, "x")
	ctx := context.Background()
	if err := b.c.Set(ctx, b.lockKey("x"), "dead", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tok, err := b.Coordinate(p.source("x", "b"), "x").Refresh(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("takeover took %v", el)
	}
	if tok.AccessToken != p.latest("x") || p.total() != 1 {
		t.Errorf("got %q after %d calls", tok.AccessToken, p.total())
	}
	if st := b.Status(); st.Takeovers != 1 || st.Waits != 1 {
		t.Errorf("status %+v", st)
	}
	eventually(t, time.Second, "takeover event", func() bool { return log.count(EventTakeover) == 1 })
}

// The holder extends its lease while a slow source runs: nobody takes over.
func TestCoordinateExtendsLease(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	opts := Options{Prefix: "extend:", LockTTL: 150 * time.Millisecond}
	a := newStore(t, srv, opts)
	b := newStore(t, srv, opts)
	first := seed(t, a, p, "x")
	started := make(chan struct{})
	p.before = func(ctx context.Context, name, caller string) error {
		if caller != "a" {
			return nil
		}
		close(started)
		select { // a slow identity provider: four leases long
		case <-time.After(600 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	da := refreshAsync(a.Coordinate(p.source("x", "a"), "x"), first, 10*time.Second)
	<-started
	db := refreshAsync(b.Coordinate(p.source("x", "b"), "x"), first, 10*time.Second)
	ra, rb := <-da, <-db
	if ra.err != nil || rb.err != nil {
		t.Fatalf("a: %v, b: %v", ra.err, rb.err)
	}
	if ra.tok.AccessToken != rb.tok.AccessToken || p.total() != 1 {
		t.Errorf("a %q, b %q, %d calls; want one call shared", ra.tok.AccessToken, rb.tok.AccessToken, p.total())
	}
	if st := b.Status(); st.Takeovers != 0 || st.Joined != 1 {
		t.Errorf("b status %+v", st)
	}
}

// A source's error comes back unchanged and the lock is released.
func TestCoordinateSourceError(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	s := newStore(t, srv, Options{Prefix: "err:"})
	first := seed(t, s, p, "x")
	ctx := context.Background()
	bad := tokenkeeper.SourceFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		return nil, tokenkeeper.Permanent(errors.New("revoked"))
	})
	_, err := s.Coordinate(bad, "x").Refresh(ctx, first)
	var re *tokenkeeper.RefreshError
	if !errors.As(err, &re) || !re.Permanent {
		t.Fatalf("error %v is not the source's permanent error", err)
	}
	if n, _ := s.c.Exists(ctx, s.lockKey("x")).Result(); n != 0 {
		t.Error("lock not released after a failed refresh")
	}
	none := tokenkeeper.SourceFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) { return nil, nil })
	if tok, err := s.Coordinate(none, "x").Refresh(ctx, first); tok != nil || err != nil {
		t.Errorf("nil answer: %v, %v", tok, err)
	}
	if v := storedVersion(t, s, "x"); v != 1 {
		t.Errorf("version %d after failed refreshes, want 1", v)
	}
	// A panicking source does not leak the lease goroutine (goleak checks).
	boom := tokenkeeper.SourceFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) { panic("boom") })
	func() {
		defer func() { _ = recover() }()
		_, _ = s.Coordinate(boom, "x").Refresh(ctx, first)
	}()
	// A caller that gives up while the lock is held elsewhere.
	if err := s.c.Set(ctx, s.lockKey("x"), "other", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Coordinate(p.source("x", "s"), "x").Refresh(short, first); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("giving up: %v", err)
	}
}

// Fencing: a holder whose lease ran out while it was stalled, and whose
// identity provider answered late, cannot write over the newer token.
func TestCoordinateFencing(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, false)
	var fz freezer
	ca := srv.client(t)
	ca.AddHook(&fz)
	a, err := New(ca, Options{Prefix: "fencing:", LockTTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := newStore(t, srv, Options{Prefix: "fencing:", LockTTL: 200 * time.Millisecond})
	first := seed(t, b, p, "x")
	ctx := context.Background()

	answered := make(chan struct{})
	late := make(chan struct{})
	p.after = func(name, caller string) {
		if caller == "a" {
			close(answered)
			<-late // the answer is delayed in the network
		}
	}
	done := refreshAsync(a.Coordinate(p.source("x", "a"), "x"), first, 10*time.Second)
	<-answered
	fz.freeze() // a stalls: its lease is not extended
	eventually(t, 3*time.Second, "a's lease to run out", func() bool {
		n, _ := b.c.Exists(ctx, b.lockKey("x")).Result()
		return n == 0
	})
	// Meanwhile another process stores a newer token under its own lock.
	newer := &oauth2.Token{AccessToken: "newer", RefreshToken: "rt-newer", Expiry: time.Now().Add(time.Hour)}
	if err := b.c.Set(ctx, b.lockKey("x"), "b", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := b.commit(ctx, "x", "b", 1, newer); err != nil || v != 2 {
		t.Fatalf("b's commit: %d, %v", v, err)
	}
	fz.thaw()
	close(late)
	r := <-done
	if r.err != nil || r.tok.AccessToken != "newer" {
		t.Fatalf("a got %v, %v; want the newer token", r.tok, r.err)
	}
	got, err := b.Load(ctx, "x")
	if err != nil || got.AccessToken != "newer" || storedVersion(t, b, "x") != 2 {
		t.Fatalf("stored %v (%v) at version %d; the stalled holder overwrote it", got, err, storedVersion(t, b, "x"))
	}
	if a.Status().Conflicts == 0 {
		t.Error("conflict not counted")
	}
}

// A holder stalled before it sent the refresh token does not send it once
// its lease ran out: its source's ctx is cancelled. The waiter takes over
// and the refresh token is used once.
func TestStalledHolderDoesNotSendSpentToken(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	var fz freezer
	ca := srv.client(t)
	ca.AddHook(&fz)
	opts := Options{Prefix: "stall:", LockTTL: 200 * time.Millisecond}
	a, err := New(ca, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := newStore(t, srv, opts)
	first := seed(t, b, p, "x")

	stalled := make(chan struct{})
	resume := make(chan struct{})
	p.before = func(ctx context.Context, name, caller string) error {
		if caller == "a" {
			close(stalled)
			<-resume // paused, ignoring its context, as a stopped process would
		}
		return nil
	}
	da := refreshAsync(a.Coordinate(p.source("x", "a"), "x"), first, 10*time.Second)
	<-stalled
	fz.freeze()
	rb := <-refreshAsync(b.Coordinate(p.source("x", "b"), "x"), first, 10*time.Second)
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	fz.thaw()
	close(resume)
	ra := <-da
	if ra.err != nil || ra.tok.AccessToken != rb.tok.AccessToken {
		t.Fatalf("a got %v, %v; want b's %q", ra.tok, ra.err, rb.tok.AccessToken)
	}
	if p.reused.Load() != 0 || p.total() != 1 {
		t.Errorf("reused %d, calls %d; want 0 and 1", p.reused.Load(), p.total())
	}
	if b.Status().Takeovers != 1 {
		t.Errorf("b status %+v", b.Status())
	}
}

// Concurrent refreshes of one token in one process share one call.
func TestCoordinateConcurrentInProcess(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	s := newStore(t, srv, Options{Prefix: "conc:"})
	first := seed(t, s, p, "x")
	src := s.Coordinate(p.source("x", "s"), "x")
	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Go(func() {
			tok, err := src.Refresh(context.Background(), first)
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok.AccessToken
		})
	}
	wg.Wait()
	for _, a := range toks {
		if a != toks[0] {
			t.Fatalf("different tokens: %v", toks)
		}
	}
	if p.total() != 1 {
		t.Errorf("%d source calls, want 1", p.total())
	}
}
