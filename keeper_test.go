package tokenkeeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// A token is refreshed when its window opens if the application is idle:
// 40 minutes into a one-hour token, exactly.
func TestRefreshAtWindowOpenWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		src := &fakeSource{}
		k := newKeeper(t, Config{})
		h, err := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("initial", t0.Add(time.Hour)), Policy: noJitter()})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(40*time.Minute - time.Second)
		synctest.Wait()
		if n := src.count(); n != 0 {
			t.Fatalf("calls before the window = %d, want 0", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := src.times()
		if len(got) != 1 || !got[0].Equal(t0.Add(40*time.Minute)) {
			t.Fatalf("refresh times = %v, want one at %v", got, t0.Add(40*time.Minute))
		}
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "access-1" {
			t.Fatalf("after refresh got %v, %v; want access-1", tok, err)
		}
		// The refresh token of the first token was passed to the source.
		if rt := src.calls[0].cur.RefreshToken; rt != "refresh-initial" {
			t.Errorf("source got refresh token %q, want refresh-initial", rt)
		}
	})
}

// While the application is busy, the refresh waits for an idle gap of 30 s,
// and happens at the window's end regardless.
func TestRefreshWaitsForIdleGap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		busyTill time.Duration // activity every 5 s until then
		want     time.Duration // refresh moment
	}{
		{"busy through the window", 50 * time.Minute, 45 * time.Minute},
		{"quiet at 42m", 42 * time.Minute, 42*time.Minute - 5*time.Second + 30*time.Second}, // last fetch at 41:55
		{"quiet before the window", 30 * time.Minute, 40 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				src := &fakeSource{}
				k := newKeeper(t, Config{})
				_, err := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("initial", t0.Add(time.Hour)), Policy: noJitter()})
				if err != nil {
					t.Fatal(err)
				}
				for time.Since(t0) < tc.busyTill {
					if _, err := k.Token(t.Context(), "a"); err != nil {
						t.Fatal(err)
					}
					time.Sleep(5 * time.Second)
				}
				time.Sleep(t0.Add(tc.want).Sub(time.Now()) + time.Minute)
				synctest.Wait()
				got := src.times()
				if len(got) == 0 || !got[0].Equal(t0.Add(tc.want)) {
					t.Fatalf("refresh times = %v, want first at +%v", got, tc.want)
				}
			})
		})
	}
}

// 10,000 callers of an expired token cause one call to the source; callers
// whose ctx ends early return at once while the refresh completes for the rest.
func TestStampedeOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-release
			return newTok("fresh", time.Now().Add(time.Hour)), nil
		}}
		k := newKeeper(t, Config{})
		h, err := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", time.Now().Add(-time.Minute)), Policy: noJitter()})
		if err != nil {
			t.Fatal(err)
		}
		const n = 10000
		var ok, early atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ctx := context.Background()
				if i%10 == 0 {
					c, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					ctx = c
				}
				start := time.Now()
				tok, err := h.TokenContext(ctx)
				switch {
				case err == nil && tok.AccessToken == "fresh":
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded) && time.Since(start) == time.Second:
					early.Add(1)
				default:
					t.Errorf("caller %d: %v, %v", i, tok, err)
				}
			})
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if early.Load() != n/10 {
			t.Errorf("callers that gave up after 1 s = %d, want %d", early.Load(), n/10)
		}
		close(release)
		wg.Wait()
		if c := src.count(); c != 1 {
			t.Errorf("source calls = %d, want 1", c)
		}
		if ok.Load() != n-n/10 {
			t.Errorf("callers served = %d, want %d", ok.Load(), n-n/10)
		}
	})
}

// A permanent failure surfaces as ErrReauthRequired, once as an event, and
// stops all further attempts; the still-valid token keeps being served.
func TestPermanentFailureStopsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			return nil, &oauth2.RetrieveError{
				Response:  &http.Response{StatusCode: 400, Header: http.Header{}},
				Body:      []byte(`{"error":"invalid_grant","refresh_token":"SECRET-RT"}`),
				ErrorCode: "invalid_grant",
			}
		}}
		var log eventLog
		k := newKeeper(t, Config{OnEvent: log.add})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("valid", t0.Add(time.Hour)), Policy: noJitter()})
		time.Sleep(41 * time.Minute)
		synctest.Wait()
		if tok, err := h.TokenContext(t.Context()); err != nil || tok.AccessToken != "valid" {
			t.Fatalf("valid token after permanent failure: %v, %v", tok, err)
		}
		time.Sleep(time.Hour)
		_, err := h.TokenContext(t.Context())
		if !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("err = %v, want ErrReauthRequired", err)
		}
		var re *RefreshError
		if !errors.As(err, &re) || re.Code != "invalid_grant" || !re.Permanent {
			t.Fatalf("err = %#v, want a permanent RefreshError with invalid_grant", err)
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(re.Body, "SECRET") {
			t.Fatalf("secret in error: %q / %q", err, re.Body)
		}
		synctest.Wait()
		if c := src.count(); c != 1 {
			t.Errorf("source calls = %d, want 1", c)
		}
		if got := len(log.kinds(EventReauthRequired)); got != 1 {
			t.Errorf("reauth events = %d, want 1", got)
		}
		if st := h.Status(); st.State != StateReauthRequired {
			t.Errorf("state = %v, want reauth-required", st.State)
		}
	})
}

// A transient failure with Retry-After is retried after exactly that long,
// while the valid token keeps being served.
func TestRetryAfterHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			if n <= 2 {
				return nil, RetryAfter(errors.New("503 service unavailable"), 2*time.Minute)
			}
			return newTok("fresh", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", t0.Add(time.Hour)), Policy: noJitter()})
		time.Sleep(30 * time.Second) // the user fetches at half minutes
		for range 50 {
			time.Sleep(time.Minute)
			if tok, err := h.TokenContext(t.Context()); err != nil {
				t.Fatalf("at %v: %v", time.Since(t0), err)
			} else if time.Since(t0) < 44*time.Minute && tok.AccessToken != "old" {
				t.Fatalf("at %v: token %q, want old", time.Since(t0), tok.AccessToken)
			}
		}
		want := []time.Duration{40 * time.Minute, 42 * time.Minute, 44 * time.Minute}
		got := src.times()
		if len(got) < 3 {
			t.Fatalf("calls = %v", got)
		}
		for i, w := range want {
			if d := got[i].Sub(t0); d != w {
				t.Errorf("call %d at +%v, want +%v", i, d, w)
			}
		}
		if tok, _ := h.TokenContext(t.Context()); tok.AccessToken != "fresh" {
			t.Errorf("token %q, want fresh", tok.AccessToken)
		}
	})
}

// The breaker opens after repeated failures; callers without a valid token
// then fail at once with ErrCircuitOpen wrapping the cause; a successful probe
// closes it.
func TestBreakerOpensAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var healthy atomic.Bool
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			if !healthy.Load() {
				return nil, &RefreshError{Status: 500, Err: errors.New("boom")}
			}
			return newTok("fresh", time.Now().Add(time.Hour)), nil
		}
		var log eventLog
		k := newKeeper(t, Config{Breaker: BreakerSettings{Failures: 3, OpenFor: 10 * time.Second}, OnEvent: log.add})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Policy: noJitter()})
		synctest.Wait() // the first fetch fails
		for range 2 {
			if _, err := h.TokenContext(t.Context()); err == nil || errors.Is(err, ErrCircuitOpen) {
				t.Fatalf("err = %v, want the source's failure", err)
			}
		}
		calls := src.count()
		if calls != 3 {
			t.Fatalf("calls = %d, want 3", calls)
		}
		start := time.Now()
		_, err := h.TokenContext(t.Context())
		if !errors.Is(err, ErrCircuitOpen) || time.Since(start) != 0 {
			t.Fatalf("err = %v after %v, want ErrCircuitOpen at once", err, time.Since(start))
		}
		var re *RefreshError
		if !errors.As(err, &re) || re.Status != 500 {
			t.Fatalf("circuit error does not wrap the cause: %v", err)
		}
		if st := h.Status(); st.Breaker != BreakerOpen {
			t.Errorf("breaker = %v, want open", st.Breaker)
		}
		healthy.Store(true)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "fresh" {
			t.Fatalf("after recovery: %v, %v", tok, err)
		}
		if c := src.count(); c != calls+1 {
			t.Errorf("calls = %d, want %d (one probe)", c, calls+1)
		}
		var states []BreakerState
		for _, e := range log.kinds(EventBreaker) {
			states = append(states, e.Breaker)
		}
		if len(states) < 2 || states[0] != BreakerOpen || states[len(states)-1] != BreakerClosed {
			t.Errorf("breaker events = %v, want open ... closed", states)
		}
	})
}

// When the queue is full, a caller with no valid token refreshes on its own
// goroutine.
func TestQueueFullFallsBackInline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		slow := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-block
			return newTok("slow", time.Now().Add(time.Hour)), nil
		}}
		fast := &fakeSource{}
		k := newKeeper(t, Config{Workers: 1, MaxQueued: 1})
		k.Add(TokenConfig{Name: "busy", Source: slow, Policy: noJitter()})
		synctest.Wait() // the only worker is stuck in slow
		k.Add(TokenConfig{Name: "queued", Source: slow, Policy: noJitter()})
		synctest.Wait() // the queue's only slot is taken
		h, _ := k.Add(TokenConfig{Name: "c", Source: fast, Token: newTok("expired", time.Now().Add(-time.Second)), Policy: noJitter()})
		synctest.Wait()
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "access-1" {
			t.Fatalf("inline refresh: %v, %v", tok, err)
		}
		close(block)
	})
}

// A panicking source yields a *PanicError, is counted, and leaves the
// keeper working; the panic value is not in the error.
func TestSourcePanicRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			if n == 1 {
				panic("leaked SECRET")
			}
			return newTok("ok", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("x", time.Now().Add(time.Hour))})
		_, err := h.Refresh(t.Context())
		var pe *PanicError
		if !errors.As(err, &pe) || strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("err = %v, want a PanicError without the value", err)
		}
		if _, _, p := k.QueueStats(); p != 1 {
			t.Errorf("panics = %d, want 1", p)
		}
		tok, err := h.Refresh(t.Context())
		if err != nil || tok.AccessToken != "ok" {
			t.Fatalf("after panic: %v, %v", tok, err)
		}
	})
}

// A source that hangs is cut off by the attempt timeout.
func TestAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("x", time.Now().Add(-time.Second)),
			Policy: &Policy{AttemptTimeout: 7 * time.Second}})
		start := time.Now()
		_, err := h.TokenContext(t.Context())
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 7*time.Second {
			t.Fatalf("err = %v after %v, want DeadlineExceeded after 7s", err, time.Since(start))
		}
	})
}

// Tokens that are nil, empty or already expired are rejected with
// ErrInvalidToken and retried; absurd expiries are clamped; missing ones
// follow DefaultLifetime.
func TestBadTokensFromSource(t *testing.T) {
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		tok     *oauth2.Token
		pol     Policy
		wantErr bool
		wantExp time.Duration // from now; 0 = no expiry
	}{
		{name: "nil", tok: nil, wantErr: true},
		{name: "empty access", tok: &oauth2.Token{Expiry: now.Add(time.Hour)}, wantErr: true},
		{name: "expired", tok: newTok("x", now.Add(-time.Hour)), wantErr: true},
		{name: "years away", tok: newTok("x", now.Add(5*365*24*time.Hour)), wantExp: DefaultMaxLifetime},
		{name: "custom max", tok: newTok("x", now.Add(48*time.Hour)), pol: Policy{MaxLifetime: 24 * time.Hour}, wantExp: 24 * time.Hour},
		{name: "no expiry", tok: &oauth2.Token{AccessToken: "x"}},
		{name: "default lifetime", tok: &oauth2.Token{AccessToken: "x"}, pol: Policy{DefaultLifetime: time.Hour}, wantExp: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
					return tc.tok, nil
				}}
				k := newKeeper(t, Config{})
				h, _ := k.Add(TokenConfig{Name: "a", Source: src, Policy: &tc.pol})
				tok, err := h.TokenContext(t.Context())
				if tc.wantErr {
					if !errors.Is(err, ErrInvalidToken) {
						t.Fatalf("err = %v, want ErrInvalidToken", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got time.Duration
				if !tok.Expiry.IsZero() {
					got = tok.Expiry.Sub(time.Now())
				}
				if got != tc.wantExp {
					t.Errorf("expiry in %v, want %v", got, tc.wantExp)
				}
			})
		})
	}
}

func TestAddRemoveAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeeper(t, Config{})
		src := &fakeSource{}
		if _, err := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("a", time.Now().Add(time.Hour))}); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Add(TokenConfig{Name: "a", Source: src}); !errors.Is(err, ErrDuplicateToken) {
			t.Errorf("duplicate: %v", err)
		}
		if _, err := k.Add(TokenConfig{Name: "b"}); err == nil {
			t.Error("nil source accepted")
		}
		if _, err := k.Add(TokenConfig{Source: src}); err == nil {
			t.Error("empty name accepted")
		}
		if _, err := k.Add(TokenConfig{Name: "b", Source: src, Policy: &Policy{StartLead: time.Minute, EndLead: time.Hour}}); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("bad policy: %v", err)
		}
		if _, err := k.Token(t.Context(), "nope"); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("unknown: %v", err)
		}
		if err := k.Remove("nope"); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("remove unknown: %v", err)
		}
		h, _ := k.Handle("a")
		if err := k.Remove("a"); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Token(t.Context(), "a"); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("after remove: %v", err)
		}
		if _, err := h.Refresh(t.Context()); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("refresh after remove: %v", err)
		}
		b, _ := k.Add(TokenConfig{Name: "b", Source: src, Token: newTok("b", time.Now().Add(time.Hour))})
		if got := k.Names(); len(got) != 1 || got[0] != "b" {
			t.Errorf("names = %v", got)
		}
		k.Close()
		k.Close()
		if _, err := k.Add(TokenConfig{Name: "c", Source: src}); !errors.Is(err, ErrClosed) {
			t.Errorf("add after close: %v", err)
		}
		if _, err := b.Refresh(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("refresh after close: %v", err)
		}
		// A valid token is still handed out.
		if tok, err := b.TokenContext(t.Context()); err != nil || tok.AccessToken != "b" {
			t.Errorf("valid token after close: %v, %v", tok, err)
		}
	})
}

// Close releases callers waiting for a refresh with ErrClosed.
func TestCloseReleasesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src})
		errc := make(chan error)
		go func() { _, err := h.TokenContext(context.Background()); errc <- err }()
		synctest.Wait()
		k.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter got %v, want ErrClosed", err)
		}
	})
}

// Invalidate acts only on the current token and starts one urgent refresh.
func TestInvalidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		var log eventLog
		k := newKeeper(t, Config{OnEvent: log.add})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", time.Now().Add(time.Hour))})
		synctest.Wait()
		old, _ := h.TokenContext(t.Context())
		if !h.Invalidate(old) {
			t.Fatal("Invalidate(current) = false")
		}
		if h.Invalidate(old) {
			t.Fatal("second Invalidate of the same token = true")
		}
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "access-1" {
			t.Fatalf("after invalidate: %v, %v", tok, err)
		}
		if h.Invalidate(old) || h.Invalidate(nil) {
			t.Fatal("Invalidate of a replaced token = true")
		}
		synctest.Wait()
		if c := src.count(); c != 1 {
			t.Errorf("calls = %d, want 1", c)
		}
		if len(log.kinds(EventInvalidated)) != 1 {
			t.Errorf("invalidated events = %d", len(log.kinds(EventInvalidated)))
		}
	})
}

// TokenValidFor waits for a refresh when the token expires too soon.
func TestTokenValidFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", time.Now().Add(10*time.Minute)),
			Policy: &Policy{StartLead: time.Minute, EndLead: time.Minute, NoJitter: true}})
		tok, err := k.TokenValidFor(t.Context(), "a", 5*time.Minute)
		if err != nil || tok.AccessToken != "old" {
			t.Fatalf("5 min: %v, %v", tok, err)
		}
		tok, err = h.TokenValidFor(t.Context(), 30*time.Minute)
		if err != nil || tok.AccessToken != "access-1" {
			t.Fatalf("30 min: %v, %v", tok, err)
		}
		if _, err := h.TokenValidFor(t.Context(), 2*time.Hour); err == nil {
			t.Fatal("asking for more than a token's lifetime succeeded")
		}
	})
}

// The refresh_in hint opens the window early.
func TestRefreshInHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			tok := newTok("hinted", time.Now().Add(time.Hour))
			return tok.WithExtra(map[string]any{"refresh_in": float64(600)}), nil
		}
		k := newKeeper(t, Config{})
		k.Add(TokenConfig{Name: "a", Source: src, Policy: noJitter()})
		synctest.Wait()
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		got := src.times()
		if len(got) != 2 || got[1].Sub(t0) != 10*time.Minute {
			t.Fatalf("calls at %v, want the second at +10m", got)
		}
	})
}

// A token unused for UnusedAfter is not refreshed ahead of time, and its
// next use refreshes it.
func TestDormantToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		src := &fakeSource{}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", t0.Add(time.Hour)),
			Policy: &Policy{UnusedAfter: 30 * time.Minute, NoJitter: true}})
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if c := src.count(); c != 0 {
			t.Fatalf("dormant token refreshed %d times", c)
		}
		if st := h.Status(); st.State != StateExpired && st.State != StateDormant {
			t.Errorf("state = %v", st.State)
		}
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "access-1" {
			t.Fatalf("on next use: %v, %v", tok, err)
		}
	})
}

// After a wall-clock jump (suspend and resume), the keeper never hands out
// the expired token and re-plans at once, without waiting for a caller.
func TestClockJump(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var log eventLog
		k := newKeeper(t, Config{OnEvent: log.add})
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			// The identity provider lives on the same (jumped) wall clock.
			return newTok("new", k.clock.wallTime().Add(time.Hour)), nil
		}
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", t0.Add(time.Hour)), Policy: noJitter()})
		h.TokenContext(t.Context())
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		// The machine sleeps for two hours: the wall clock moves, timers don't.
		k.clock.skew.Store(int64(2 * time.Hour))
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken == "old" {
			t.Fatalf("after the jump got %v, %v; the old token expired", tok, err)
		}
		// Second scenario: nobody asks; the keeper re-plans by itself.
		k.clock.skew.Store(int64(2*time.Hour) + int64(3*time.Hour))
		n := src.count()
		time.Sleep(time.Second)
		synctest.Wait()
		if src.count() != n+1 {
			t.Fatalf("no refresh within a second after a jump (calls %d -> %d)", n, src.count())
		}
		if len(log.kinds(EventClockJump)) == 0 {
			t.Error("no clock-jump event")
		}
	})
}

// Tokens are saved before they are handed out, and loaded on Add.
func TestStoreSaveBeforeUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{m: map[string]*oauth2.Token{"a": newTok("stored", time.Now().Add(time.Hour))}}
		src := &fakeSource{}
		var k *Keeper
		st.onSave = func(name string, tok *oauth2.Token) {
			cur, _ := k.Token(context.Background(), name)
			if cur.AccessToken == tok.AccessToken {
				t.Errorf("token %q was handed out before it was saved", tok.AccessToken)
			}
		}
		k = newKeeper(t, Config{Store: st})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src})
		if tok, _ := h.TokenContext(t.Context()); tok.AccessToken != "stored" {
			t.Fatalf("initial token %q, want stored", tok.AccessToken)
		}
		if _, err := h.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := st.get("a"); got.AccessToken != "access-1" || got.RefreshToken != "refresh-access-1" {
			t.Errorf("stored %v", got.AccessToken)
		}
		st.fail = true
		if tok, err := h.Refresh(t.Context()); err != nil || tok.AccessToken != "access-2" {
			t.Errorf("with a failing store: %v, %v (the token must be used anyway)", tok, err)
		}
	})
}

type memStore struct {
	mu     sync.Mutex
	m      map[string]*oauth2.Token
	fail   bool
	onSave func(string, *oauth2.Token)
}

func (s *memStore) Load(ctx context.Context, name string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.m[name]; ok {
		return t, nil
	}
	return nil, ErrNotFound
}

func (s *memStore) Save(ctx context.Context, name string, tok *oauth2.Token) error {
	if s.onSave != nil {
		s.onSave(name, tok)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk full")
	}
	s.m[name] = tok
	return nil
}

func (s *memStore) Delete(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, name)
	return nil
}

func (s *memStore) get(name string) *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}

func TestAdopt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			return nil, Permanent(errors.New("revoked"))
		}}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src})
		if _, err := h.TokenContext(t.Context()); !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("err = %v", err)
		}
		if err := h.Adopt(nil); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Adopt(nil) = %v", err)
		}
		if err := h.Adopt(newTok("stale", time.Now().Add(-time.Minute))); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Adopt(expired) = %v", err)
		}
		if err := h.Adopt(newTok("signed-in", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "signed-in" {
			t.Fatalf("after Adopt: %v, %v", tok, err)
		}
		if st := h.Status(); st.State != StateValid {
			t.Errorf("state = %v", st.State)
		}
		k.Remove("a")
		if err := h.Adopt(newTok("x", time.Now().Add(time.Hour))); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("after remove: %v", err)
		}
	})
}

// After Close the keeper's clock no longer ticks; a Handle must still never
// hand out a token that has expired since.
func TestNoExpiredTokenAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: &fakeSource{}, Token: newTok("a", time.Now().Add(time.Minute))})
		if _, err := h.TokenContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		k.Close()
		time.Sleep(2 * time.Minute)
		if tok, err := h.TokenContext(t.Context()); err == nil {
			t.Fatalf("expired token %q handed out after Close", tok.AccessToken)
		} else if !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
}

// While a server-requested Retry-After is in force, a caller with no valid
// token gets the last error at once instead of starting a new attempt.
func TestRetryAfterAppliesToCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			if n == 1 {
				return nil, RetryAfter(errors.New("503"), time.Minute)
			}
			return newTok("ok", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("x", time.Now().Add(-time.Second))})
		synctest.Wait() // the background refresh of the expired token fails
		for range 10 {
			_, err := h.TokenContext(t.Context())
			var re *RefreshError
			if !errors.As(err, &re) || re.RetryAfter != time.Minute {
				t.Fatalf("err = %v", err)
			}
		}
		if n := src.count(); n != 1 {
			t.Fatalf("source calls = %d, want 1", n)
		}
		if w := k.Waits(); w != 0 {
			t.Errorf("waits = %d, want 0 (callers fail fast)", w)
		}
		time.Sleep(time.Minute)
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken != "ok" {
			t.Fatalf("after the pause: %v, %v", tok, err)
		}
	})
}

// An API that rejects every token gets one refresh, not one per request.
func TestInvalidateStormLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("x", time.Now().Add(time.Hour))})
		for range 20 {
			tok, err := h.TokenContext(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			h.Invalidate(tok)
		}
		synctest.Wait()
		if n := src.count(); n != 1 {
			t.Errorf("source calls = %d, want 1", n)
		}
		time.Sleep(6 * time.Second)
		tok, _ := h.TokenContext(t.Context())
		if !h.Invalidate(tok) {
			t.Error("a rejection 6 s later was ignored")
		}
	})
}

func TestInstallSavesThenAdopts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{m: map[string]*oauth2.Token{}}
		k := newKeeper(t, Config{Store: st})
		h, _ := k.Add(TokenConfig{Name: "a", Source: &fakeSource{}, Token: newTok("old", time.Now().Add(time.Hour))})
		if err := h.Install(t.Context(), newTok("signed-in", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		if got := st.get("a"); got == nil || got.AccessToken != "signed-in" {
			t.Fatalf("stored %v", got)
		}
		st.fail = true
		if err := h.Install(t.Context(), newTok("again", time.Now().Add(time.Hour))); err == nil {
			t.Fatal("a failed save was not reported")
		}
		if tok, _ := h.TokenContext(t.Context()); tok.AccessToken != "again" {
			t.Errorf("token %q, want again (adopted despite the failed save)", tok.AccessToken)
		}
		if err := h.Install(t.Context(), nil); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Install(nil) = %v", err)
		}
	})
}

// A stalled clock goroutine (GC, an overloaded host) must not let a token
// that expired during the stall through: near expiry the hot path checks the
// precise time.
func TestStalledClockNearExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeeper(t, Config{})
		src := &fakeSource{}
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", time.Now().Add(time.Hour)),
			Policy: &Policy{UnusedAfter: time.Minute}}) // dormant: no refresh ahead of time
		h.TokenContext(t.Context())
		stale := k.clock.coarse.Load()
		time.Sleep(time.Hour + time.Minute)
		// The clock goroutine "did not run": fast mode with a reading an
		// hour old.
		k.clock.fast.Store(true)
		k.clock.coarse.Store(stale + int64(time.Hour-5*time.Second))
		tok, err := h.TokenContext(t.Context())
		if err != nil || tok.AccessToken == "old" {
			t.Fatalf("got %v, %v: the expired token was handed out", tok, err)
		}
	})
}

// A valid token that arrives (Adopt) after a refresh was decided but before
// it ran answers the refresh: the source is not called.
func TestAdoptAnswersPendingRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		blocker := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-block
			return newTok("b", time.Now().Add(time.Hour)), nil
		}}
		src := &fakeSource{}
		k := newKeeper(t, Config{Workers: 1})
		k.Add(TokenConfig{Name: "blocker", Source: blocker})
		synctest.Wait() // the only worker is busy
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("expired", time.Now().Add(-time.Second))})
		done := make(chan *oauth2.Token)
		go func() { tok, _ := h.TokenContext(context.Background()); done <- tok }()
		synctest.Wait() // a refresh of "a" is queued and a caller waits
		if err := h.Adopt(newTok("from-elsewhere", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		close(block)
		if tok := <-done; tok.AccessToken != "from-elsewhere" {
			t.Errorf("caller got %q", tok.AccessToken)
		}
		synctest.Wait()
		if n := src.count(); n != 0 {
			t.Errorf("source called %d times for a token that had just been adopted", n)
		}
	})
}

// Asking for more validity than the provider's tokens have fails with
// ErrMinValidTooLong, after one refresh at most.
func TestMinValidTooLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{lifetime: 10 * time.Minute}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src})
		for range 5 {
			if _, err := h.TokenValidFor(t.Context(), time.Hour); !errors.Is(err, ErrMinValidTooLong) {
				t.Fatalf("err = %v", err)
			}
		}
		if n := src.count(); n != 1 {
			t.Errorf("source calls = %d, want 1", n)
		}
	})
}

// A third-party source's error text is scrubbed before it reaches statuses.
func TestSourceErrorTextScrubbed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			return nil, fmt.Errorf(`bad answer {"access_token":"LEAKED-SECRET","error":"x"}`)
		}}
		var log eventLog
		k := newKeeper(t, Config{OnEvent: log.add})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("v", time.Now().Add(time.Hour))})
		k.Add(TokenConfig{Name: "w", Source: src, Token: newTok("v", time.Now().Add(time.Hour))})
		_, err := h.Refresh(t.Context())
		synctest.Wait()
		texts := []string{err.Error(), h.Status().LastError}
		for _, e := range log.ev {
			if e.Err != nil {
				texts = append(texts, e.Err.Error())
			}
		}
		for _, s := range texts {
			if strings.Contains(s, "LEAKED-SECRET") {
				t.Errorf("secret in %q", s)
			}
		}
		var windows int
		for _, e := range log.kinds(EventScheduled) {
			if !e.WindowEnd.IsZero() {
				windows++
			}
		}
		if windows == 0 {
			t.Error("no scheduled event carries its window")
		}
	})
}

// Shutdown lets a running refresh finish and saves its token; Close cancels
// it. A refresh whose token arrives after Remove is still saved.
func TestShutdownDrainsRefreshes(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprint("graceful=", graceful), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := &memStore{m: map[string]*oauth2.Token{}}
				src := &fakeSource{}
				src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
					select {
					case <-time.After(5 * time.Second):
						return newTok("rotated", time.Now().Add(time.Hour)), nil
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				k, _ := New(Config{Store: st, Location: time.UTC})
				h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", time.Now().Add(time.Hour))})
				go h.Refresh(context.Background())
				synctest.Wait()
				start := time.Now()
				if graceful {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if err := k.Shutdown(ctx); err != nil {
						t.Fatal(err)
					}
					if time.Since(start) != 5*time.Second || st.get("a") == nil || st.get("a").AccessToken != "rotated" {
						t.Errorf("Shutdown returned after %v, stored %v", time.Since(start), st.get("a"))
					}
				} else {
					k.Close()
					if time.Since(start) != 0 || st.get("a") != nil {
						t.Errorf("Close took %v, stored %v", time.Since(start), st.get("a"))
					}
				}
				if err := k.Shutdown(context.Background()); err != nil {
					t.Errorf("second Shutdown: %v", err)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{m: map[string]*oauth2.Token{}}
		release := make(chan struct{})
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-release
			return newTok("rotated", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{Store: st})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("old", time.Now().Add(time.Hour))})
		go h.Refresh(context.Background())
		synctest.Wait()
		k.Remove("a")
		close(release)
		synctest.Wait()
		if got := st.get("a"); got == nil || got.AccessToken != "rotated" {
			t.Errorf("token received after Remove was not saved: %v", got)
		}
	})
}

// While the breaker's probe is in flight, a caller with no valid token fails
// fast instead of waiting on the probe.
func TestCallersDoNotWaitOnProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hang atomic.Bool
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			if hang.Load() {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, errors.New("down")
		}
		k := newKeeper(t, Config{Breaker: BreakerSettings{Failures: 1, OpenFor: 10 * time.Second}})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src})
		synctest.Wait() // the first fetch fails and opens the breaker
		hang.Store(true)
		time.Sleep(11 * time.Second) // the planned retry becomes the probe, and hangs
		synctest.Wait()
		if st := h.Status(); st.State != StateRefreshing {
			t.Fatalf("state %v, want a probe in flight", st.State)
		}
		start := time.Now()
		if _, err := h.TokenContext(t.Context()); !errors.Is(err, ErrCircuitOpen) || time.Since(start) != 0 {
			t.Fatalf("err = %v after %v, want ErrCircuitOpen at once", err, time.Since(start))
		}
	})
}

func TestWaitsCountOnlyRealWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		src := &fakeSource{fn: func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			<-block
			return newTok("t", time.Now().Add(time.Hour)), nil
		}}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Token: &oauth2.Token{RefreshToken: "rt"}})
		synctest.Wait()
		if st := h.Status(); st.HasToken || st.State != StateRefreshing {
			t.Errorf("first refresh: %+v", st)
		}
		done, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := h.TokenContext(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("done ctx: %v", err)
		}
		if k.Waits() != 0 {
			t.Errorf("a fetch with a done ctx counted as a wait")
		}
		go h.TokenContext(context.Background())
		synctest.Wait()
		close(block)
		synctest.Wait()
		if k.Waits() != 1 || h.Status().Waits != 1 || !h.Status().HasToken {
			t.Errorf("waits = %d / %+v", k.Waits(), h.Status())
		}
	})
}

type savedAtStore struct {
	memStore
	at time.Time
}

func (s *savedAtStore) LoadSavedAt(ctx context.Context, name string) (*oauth2.Token, time.Time, error) {
	t, err := s.Load(ctx, name)
	return t, s.at, err
}

// After a restart, a token loaded from a store that knows when it saved it
// keeps its refresh window; without that, the window is computed from the
// lifetime left.
func TestRestartKeepsWindow(t *testing.T) {
	for _, withSavedAt := range []bool{true, false} {
		t.Run(fmt.Sprint("savedAt=", withSavedAt), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				tok := newTok("saved", t0.Add(time.Hour))
				var st Store = &memStore{m: map[string]*oauth2.Token{"a": tok}}
				if withSavedAt {
					st = &savedAtStore{memStore: memStore{m: map[string]*oauth2.Token{"a": tok}}, at: t0}
				}
				time.Sleep(30 * time.Minute) // the process restarts half-way
				k := newKeeper(t, Config{Store: st})
				h, _ := k.Add(TokenConfig{Name: "a", Source: &fakeSource{}, Policy: noJitter()})
				synctest.Wait()
				want := t0.Add(40 * time.Minute)
				if !withSavedAt {
					want = t0.Add(50 * time.Minute) // a 30-minute token: a third before expiry
				}
				if got := h.Status().WindowStart; !got.Equal(want) {
					t.Errorf("window opens at +%v, want +%v", got.Sub(t0), want.Sub(t0))
				}
			})
		})
	}
}
