package tokenkeeper

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/breaker"
	"github.com/tokenkeeper/tokenkeeper/internal/queue"
	"golang.org/x/oauth2"
)

// Handle is one kept token. It hands out the token without a name lookup and
// satisfies oauth2.TokenSource, so it plugs into oauth2.NewClient and every
// library that takes a TokenSource.
//
// The *oauth2.Token values a Handle returns are shared with other callers:
// do not modify them.
type Handle struct {
	k     *Keeper
	name  string
	group string
	g     *group
	src   Source
	pol   *Policy // resolved; shared by tokens with the same policy

	jitter float64

	cur      atomic.Pointer[snapshot]
	lastUsed atomic.Int64 // Unix seconds of the last hand-out (coarse)
	dormant  atomic.Bool  // not refreshed ahead of time until next use
	removed  atomic.Bool
	waits    atomic.Uint64 // callers that had to wait for a refresh

	lastInvalidate atomic.Int64 // Unix ns of the last accepted Invalidate

	mu            sync.Mutex // never held across a call out
	flight        *flight
	due           bool      // a planned refresh is queued
	dueFor        *snapshot // the token it was planned for
	reauth        error
	lastErr       error
	failures      int // consecutive
	retryAt       time.Time
	windowStart   int64 // Unix ns of the current window (status only)
	windowEnd     int64
	inflightSince time.Time
	attempts      uint64
	refreshes     uint64
	failed        uint64
	lastRefresh   time.Time
	lastLatency   time.Duration
	lat           [8]time.Duration // recent refresh latencies (ring)
	latN          int
	failRate      float64 // exponentially weighted, per attempt
	nextAt        time.Time
	nextReason    string

	// Owned by the scheduler (guarded by its mutex).
	wakeAt int64
	hidx   int
}

// snapshot is an immutable view of the current token.
type snapshot struct {
	tok        *oauth2.Token
	issued     int64 // Unix ns when the keeper received it
	expiry     int64 // Unix ns; 0: does not expire
	validUntil int64 // Unix ns until which it may be handed out; 0: invalidated
	refreshAt  int64 // server hint; 0: none
	refreshed  bool  // obtained by a refresh (not given at Add)
}

// flight is one refresh that callers can join.
type flight struct {
	done    chan struct{}
	base    *snapshot // the token the refresh was decided for
	running bool      // guarded by the handle's mu
	tok     *oauth2.Token
	err     error
}

func newFlight() *flight { return &flight{done: make(chan struct{})} }

func (f *flight) complete(tok *oauth2.Token, err error) {
	f.tok, f.err = tok, err
	close(f.done)
}

// Name returns the token's name.
func (h *Handle) Name() string { return h.name }

// String returns a description without any secret.
func (h *Handle) String() string { return "tokenkeeper.Handle(" + strconv.Quote(h.name) + ")" }

// Token returns a valid token, waiting for a refresh only if the cached one
// is not valid. It implements oauth2.TokenSource; prefer TokenContext, which
// lets the caller stop waiting.
func (h *Handle) Token() (*oauth2.Token, error) { return h.get(context.Background(), 0) }

// TokenContext returns the cached token while it is valid, without I/O,
// locks or allocation. Otherwise it waits for the token's one refresh in
// flight (starting it if needed) until ctx is done; giving up does not
// cancel the refresh for other callers. With no valid token it fails at once
// with ErrReauthRequired after a permanent failure and with ErrCircuitOpen
// while the group's breaker is open.
func (h *Handle) TokenContext(ctx context.Context) (*oauth2.Token, error) { return h.get(ctx, 0) }

// TokenValidFor is TokenContext for a caller that needs the token to stay
// valid for at least min (for a long upload, say). If the cached token
// expires sooner, it waits for a refresh. If the provider's fresh tokens
// live shorter than min, it fails with an error wrapping ErrMinValidTooLong.
//
// With a ctx that is already done, TokenContext and TokenValidFor never
// wait: they return the cached token if it is valid, else start a refresh
// (or join the one in flight) and return ctx's error at once.
func (h *Handle) TokenValidFor(ctx context.Context, min time.Duration) (*oauth2.Token, error) {
	return h.get(ctx, min)
}

// get is the hot path.
func (h *Handle) get(ctx context.Context, min time.Duration) (*oauth2.Token, error) {
	k := h.k
	now := k.clock.now()
	// Within nearExpiry of the end of validity the slow path re-checks with
	// a precise clock reading: the coarse one may be old after a process
	// stall (GC, an overloaded host).
	if s := h.cur.Load(); s != nil && s.validUntil-now > int64(min)+int64(nearExpiry) {
		if sec := now / 1e9; h.lastUsed.Load() != sec {
			h.touch(sec)
		}
		k.usage.Record(now)
		return s.tok, nil
	}
	return h.slow(ctx, min)
}

// nearExpiry is how close to the end of its validity a token is checked
// against the precise clock instead of the coarse one.
const nearExpiry = 5 * time.Second

// touch records use once per second and wakes a dormant token.
func (h *Handle) touch(sec int64) {
	h.lastUsed.Store(sec)
	if h.dormant.Load() && h.dormant.CompareAndSwap(true, false) {
		h.k.sched.evaluateSoon(h)
	}
}

func (h *Handle) slow(ctx context.Context, min time.Duration) (*oauth2.Token, error) {
	k := h.k
	if min < 0 {
		min = 0
	}
	for try := 0; ; try++ {
		now := k.clock.precise()
		seen := h.cur.Load()
		if s := seen; s != nil && s.validUntil-now > int64(min) {
			if try == 0 { // a caller that waited was recorded when it came
				h.touch(now / 1e9)
				k.usage.Record(now)
			}
			return s.tok, nil
		}
		if h.removed.Load() {
			return nil, &nameError{name: h.name, err: ErrUnknownToken}
		}
		if k.closed.Load() {
			return nil, ErrClosed
		}
		if try > 0 || h.tooShort(min, now) {
			// A refresh succeeded but its token does not satisfy min; asking
			// again would only call the provider for another one like it.
			return nil, fmt.Errorf("%w: token %q, %v asked for", ErrMinValidTooLong, h.name, min)
		}
		h.touch(now / 1e9)
		k.usage.Record(now)
		f, inline, err := h.startFlight(seen)
		if err != nil {
			return nil, err
		}
		if inline {
			h.runFlight(f)
		}
		if ctx.Err() == nil {
			h.waits.Add(1)
			k.waits.Add(1)
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("tokenkeeper: waiting for token %q: %w", h.name, ctx.Err())
		}
		if f.err != nil {
			return nil, f.err
		}
	}
}

// tooShort reports whether the current token arrived from a refresh moments
// ago yet its whole lifetime is shorter than min.
func (h *Handle) tooShort(min time.Duration, now int64) bool {
	s := h.cur.Load()
	if s == nil || !s.refreshed || s.expiry == 0 || min <= 0 || now-s.issued > int64(refreshGap(s)) {
		return false
	}
	return time.Duration(s.expiry-s.issued) <= min
}

// startFlight returns the refresh in flight, starting one if there is none.
// inline is true when the background path refused it and the caller must run
// the flight itself (runFlight).
//
// seen is the token the caller found unusable: if a valid token replaced it
// before the flight runs, the flight completes with that one and the source
// is not called.
func (h *Handle) startFlight(seen *snapshot) (f *flight, inline bool, err error) {
	k := h.k
	h.mu.Lock()
	if h.reauth != nil {
		err := h.reauth
		h.mu.Unlock()
		return nil, false, err
	}
	if f := h.flight; f != nil {
		running := f.running
		if refused, until, cause := h.g.br.Refuses(k.clock.wallTime()); refused {
			// The flight is the breaker's probe (or will be refused): a
			// caller with no valid token fails fast instead of waiting on it.
			h.mu.Unlock()
			return nil, false, &CircuitOpenError{Group: h.group, Until: until, Cause: cause}
		}
		h.mu.Unlock()
		if !running {
			// Raise a planned refresh to urgent.
			_, _ = k.q.Push(h, h.group, queue.Urgent)
		}
		return f, false, nil
	}
	now := k.clock.wallTime()
	if re, ok := h.lastErr.(*RefreshError); ok && re.RetryAfter > 0 && now.Before(h.retryAt) {
		// The server asked for a pause: honour it for callers too.
		h.mu.Unlock()
		return nil, false, re
	}
	if refused, until, cause := h.g.br.Refuses(now); refused {
		h.mu.Unlock()
		return nil, false, &CircuitOpenError{Group: h.group, Until: until, Cause: cause}
	}
	f = newFlight()
	f.base = seen
	h.flight = f
	h.inflightSince = now
	h.mu.Unlock()

	if st, _, cause := h.g.br.Snapshot(now); st == breaker.HalfOpen {
		// This refresh will be the breaker's probe. It runs in the
		// background; the caller fails fast rather than wait on a provider
		// that was failing a moment ago.
		if _, err := k.q.Push(h, h.group, queue.Urgent); err != nil {
			h.abandonFlight(err) // full or closed: the next caller tries again
		}
		return nil, false, &CircuitOpenError{Group: h.group, Cause: cause}
	}

	_, err = k.q.Push(h, h.group, queue.Urgent)
	switch {
	case err == nil:
		return f, false, nil
	case errors.Is(err, queue.ErrClosed) || k.closed.Load():
		h.mu.Lock()
		if h.flight == f && !f.running {
			h.flight = nil
			h.mu.Unlock()
			f.complete(nil, ErrClosed)
			return nil, false, ErrClosed
		}
		h.mu.Unlock()
		return f, false, nil
	default:
		// Queue full: the caller refreshes on its own goroutine.
		return f, true, nil
	}
}

// runJob is the worker's entry point.
func (h *Handle) runJob() {
	h.mu.Lock()
	f := h.flight
	if f == nil {
		if !h.due || h.removed.Load() || h.k.closed.Load() {
			h.due = false
			h.mu.Unlock()
			return
		}
		f = newFlight()
		f.base = h.dueFor
		h.flight = f
		h.inflightSince = h.k.clock.wallTime()
	}
	h.due = false
	h.dueFor = nil
	h.mu.Unlock()
	h.runFlight(f)
}

// runFlight performs f's attempt unless another goroutine already does.
func (h *Handle) runFlight(f *flight) {
	h.mu.Lock()
	if f.running || h.flight != f {
		h.mu.Unlock()
		return
	}
	cur := h.cur.Load()
	if cur != f.base && cur != nil && cur.validUntil > h.k.clock.precise() {
		// A valid token arrived since the refresh was decided (Adopt, or a
		// token another process refreshed): use it, don't call the source.
		f.running = true
		h.mu.Unlock()
		h.finish(f, cur.tok, nil)
		return
	}
	f.running = true
	h.retryAt = time.Time{}
	h.attempts++
	attempt := h.failures + 1
	h.mu.Unlock()

	defer func() {
		// A bug of ours must not leave waiters hanging.
		if r := recover(); r != nil {
			h.k.panics.Add(1)
			h.fail(f, &PanicError{Token: h.name, Type: fmt.Sprintf("%T", r), Stack: debug.Stack()}, attempt)
		}
	}()
	h.attempt(f, cur, attempt)
}

func (h *Handle) attempt(f *flight, cur *snapshot, attempt int) {
	k := h.k
	now := k.clock.wallTime()
	ok, _, until, cause := h.g.br.Allow(now)
	if !ok {
		h.refused(f, &CircuitOpenError{Group: h.group, Until: until, Cause: cause}, until)
		return
	}
	k.emit(Event{Kind: EventStarted, Token: h.name, Group: h.group, Attempt: attempt, Time: now})

	var curTok *oauth2.Token
	if cur != nil {
		curTok = cur.tok
	}
	// The attempt runs on the keeper's lifetime context, not on any caller's:
	// a caller that stops waiting must not cancel the refresh for the others.
	ctx, cancel := context.WithTimeout(k.ctx, h.pol.AttemptTimeout)
	start := time.Now()
	tok, err := h.call(ctx, curTok)
	latency := time.Since(start)
	cancel()

	now = k.clock.wallTime()
	var snap *snapshot
	if err == nil {
		snap, err = h.accept(tok, curTok, now)
	}
	if err != nil {
		if k.closed.Load() {
			h.finish(f, nil, ErrClosed)
			return
		}
		h.failed1(f, err, attempt, latency, now)
		return
	}
	if st := k.cfg.Store; st != nil {
		// Saved even if the keeper is closing or the token was removed
		// meanwhile: the old refresh token may be spent, and the store must
		// not keep it as the current one. Hence a context that Close does
		// not cancel.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(k.ctx), h.pol.AttemptTimeout)
		serr := st.Save(sctx, h.name, snap.tok)
		scancel()
		if serr != nil {
			// The new token is published anyway: with a rotating refresh
			// token the old one is already spent, so dropping the new one
			// would lose the session. The event lets the application act.
			k.emit(Event{Kind: EventStoreFailed, Token: h.name, Group: h.group, Err: serr})
		}
	}
	if h.removed.Load() {
		h.finish(f, nil, &nameError{name: h.name, err: ErrUnknownToken})
		return
	}
	h.cur.Store(snap)
	tr := h.g.br.Success(now)
	h.mu.Lock()
	h.failures = 0
	h.lastErr = nil
	h.refreshes++
	h.lastRefresh = now
	h.lastLatency = latency
	h.lat[h.latN%len(h.lat)] = latency
	h.latN++
	h.failRate *= 0.8
	h.mu.Unlock()
	if tr.Changed() {
		k.emit(Event{Kind: EventBreaker, Group: h.group, Token: h.name, Breaker: BreakerState(tr.To), Time: now})
	}
	k.emit(Event{Kind: EventSucceeded, Token: h.name, Group: h.group, Attempt: attempt, Latency: latency,
		Time: now, Expiry: expiryTime(snap)})
	h.finish(f, snap.tok, nil)
}

func expiryTime(s *snapshot) time.Time {
	if s == nil || s.expiry == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.expiry)
}

// call invokes the source, turning a panic into a *PanicError.
func (h *Handle) call(ctx context.Context, cur *oauth2.Token) (tok *oauth2.Token, err error) {
	defer func() {
		if r := recover(); r != nil {
			h.k.panics.Add(1)
			tok, err = nil, &PanicError{Token: h.name, Type: fmt.Sprintf("%T", r), Stack: debug.Stack()}
		}
	}()
	return h.src.Refresh(ctx, cur)
}

// accept validates a source's answer and builds the snapshot to publish.
func (h *Handle) accept(tok, cur *oauth2.Token, now time.Time) (*snapshot, error) {
	if tok == nil {
		return nil, fmt.Errorf("%w: nil token", ErrInvalidToken)
	}
	if tok.AccessToken == "" {
		return nil, fmt.Errorf("%w: empty access token", ErrInvalidToken)
	}
	if !tok.Expiry.IsZero() && !tok.Expiry.After(now) {
		return nil, fmt.Errorf("%w: already expired (expiry %s, now %s)", ErrInvalidToken,
			tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	t := *tok // never modify the source's value
	if t.RefreshToken == "" && cur != nil {
		t.RefreshToken = cur.RefreshToken
	}
	if t.Expiry.IsZero() && h.pol.DefaultLifetime > 0 {
		t.Expiry = now.Add(h.pol.DefaultLifetime)
	}
	if !t.Expiry.IsZero() && t.Expiry.Sub(now) > h.pol.MaxLifetime {
		h.k.emit(Event{Kind: EventExpiryClamped, Token: h.name, Group: h.group, Expiry: t.Expiry, Time: now})
		t.Expiry = now.Add(h.pol.MaxLifetime)
	}
	snap := h.snapshotOf(&t, now, now)
	snap.refreshed = true
	return snap, nil
}

// snapshotOf builds the snapshot of tok received at issued.
func (h *Handle) snapshotOf(tok *oauth2.Token, issued, now time.Time) *snapshot {
	s := &snapshot{tok: tok, issued: issued.UnixNano(), validUntil: math.MaxInt64}
	if !tok.Expiry.IsZero() {
		s.expiry = tok.Expiry.UnixNano()
		life := tok.Expiry.Sub(issued)
		s.validUntil = s.expiry - int64(h.pol.margin(life))
		if s.validUntil <= s.issued {
			s.validUntil = s.expiry
		}
	}
	if tok.AccessToken == "" {
		s.validUntil = 0 // a refresh-token-only start
	}
	if d, ok := refreshIn(tok); ok && !now.IsZero() {
		s.refreshAt = now.Add(d).UnixNano()
	}
	return s
}

// refreshIn reads the refresh_in hint (seconds) that some servers send.
func refreshIn(tok *oauth2.Token) (time.Duration, bool) {
	var secs float64
	switch v := tok.Extra("refresh_in").(type) {
	case float64:
		secs = v
	case int64:
		secs = float64(v)
	case int:
		secs = float64(v)
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false
		}
		secs = f
	default:
		return 0, false
	}
	if !(secs > 0) || secs > 365*24*3600 {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)), true
}

// failed1 handles a failed attempt.
func (h *Handle) failed1(f *flight, err error, attempt int, latency time.Duration, now time.Time) {
	k := h.k
	re := Classify(err)
	if re.Permanent {
		rerr := &reauthError{name: h.name, cause: re}
		h.mu.Lock()
		h.reauth = rerr
		h.lastErr = re
		h.failed++
		h.failures++
		h.mu.Unlock()
		k.emit(Event{Kind: EventFailed, Token: h.name, Group: h.group, Attempt: attempt, Latency: latency, Err: re, Time: now})
		k.emit(Event{Kind: EventReauthRequired, Token: h.name, Group: h.group, Err: re, Time: now})
		// The provider answered: as far as the breaker cares, it is up.
		if tr := h.g.br.Success(now); tr.Changed() {
			k.emit(Event{Kind: EventBreaker, Group: h.group, Token: h.name, Breaker: BreakerState(tr.To), Time: now})
		}
		h.finish(f, nil, rerr)
		return
	}
	tr := h.g.br.Failure(now, re)
	h.mu.Lock()
	h.failures++
	h.failed++
	h.lastErr = re
	h.failRate = h.failRate*0.8 + 0.2
	if latency > 0 {
		h.lat[h.latN%len(h.lat)] = latency
		h.latN++
	}
	wait := Backoff(h.failures-1, h.pol.RetryBase, h.pol.RetryMax, rand.Float64())
	if re.RetryAfter > wait {
		wait = re.RetryAfter
	}
	h.retryAt = now.Add(wait)
	retryAt := h.retryAt
	h.mu.Unlock()
	if tr.Changed() {
		k.emit(Event{Kind: EventBreaker, Group: h.group, Token: h.name, Breaker: BreakerState(tr.To), Time: now, NextRetry: tr.Until})
	}
	k.emit(Event{Kind: EventFailed, Token: h.name, Group: h.group, Attempt: attempt, Latency: latency, Err: re,
		NextRetry: retryAt, Time: now})
	h.finish(f, nil, re)
}

// refused handles an attempt the breaker did not allow.
func (h *Handle) refused(f *flight, err error, until time.Time) {
	now := h.k.clock.wallTime()
	h.mu.Lock()
	if until.IsZero() || until.Before(now) {
		until = now.Add(h.pol.RetryBase) // a probe is in flight; look again soon
	}
	h.retryAt = until
	h.mu.Unlock()
	h.finish(f, nil, err)
}

// fail completes a flight after a recovered panic in our own code.
func (h *Handle) fail(f *flight, err error, attempt int) {
	h.failed1(f, err, attempt, 0, h.k.clock.wallTime())
}

// finish completes f and plans what comes next.
func (h *Handle) finish(f *flight, tok *oauth2.Token, err error) {
	h.mu.Lock()
	if h.flight == f {
		h.flight = nil
	}
	h.inflightSince = time.Time{}
	h.mu.Unlock()
	f.complete(tok, err)
	if !h.removed.Load() && !h.k.closed.Load() {
		h.k.sched.evaluateSoon(h)
	}
}

// Refresh refreshes the token now and waits for the result or for ctx. If a
// refresh is already in flight, it waits for that one instead.
func (h *Handle) Refresh(ctx context.Context) (*oauth2.Token, error) {
	if h.removed.Load() {
		return nil, &nameError{name: h.name, err: ErrUnknownToken}
	}
	if h.k.closed.Load() {
		return nil, ErrClosed
	}
	f, inline, err := h.startFlight(h.cur.Load())
	if err != nil {
		return nil, err
	}
	if inline {
		h.runFlight(f)
	}
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("tokenkeeper: waiting for token %q: %w", h.name, ctx.Err())
	}
}

// Invalidate tells the keeper that a server rejected tok (for example with a
// 401). If tok is still the current token, it stops being handed out and an
// urgent refresh starts; Invalidate reports whether that happened. A token
// that was already replaced is left alone, so many requests failing with the
// same old token cause one refresh at most. Invalidations of one token are
// at least min(5 s, a tenth of its lifetime) apart; one that comes sooner is
// ignored: when the token that replaced a rejected one is rejected at once,
// refreshing again rarely helps, and doing it for every rejected request
// would hammer the identity provider.
func (h *Handle) Invalidate(tok *oauth2.Token) bool {
	if tok == nil {
		return false
	}
	s := h.cur.Load()
	if s == nil || s.validUntil == 0 || s.tok.AccessToken != tok.AccessToken {
		return false
	}
	now := h.k.clock.precise()
	if last := h.lastInvalidate.Load(); last != 0 && now-last < int64(invalidateGrace(s)) {
		// The token that replaced a rejected one is rejected again at
		// once: a new one is unlikely to fare better (an API that rejects
		// every token, clock skew), and refreshing on every rejection
		// would hammer the identity provider.
		return false
	}
	ns := *s
	ns.validUntil = 0
	if !h.cur.CompareAndSwap(s, &ns) {
		return false
	}
	h.lastInvalidate.Store(now)
	h.k.emit(Event{Kind: EventInvalidated, Token: h.name, Group: h.group})
	if h.removed.Load() || h.k.closed.Load() {
		return true
	}
	if _, inline, err := h.startFlight(&ns); err == nil && inline {
		// The queue is full. Invalidate runs on a request path and must not
		// refresh there; the next caller that needs the token will.
		h.abandonFlight(queue.ErrFull)
	}
	return true
}

// Adopt installs tok as the current token, as if a refresh had returned it:
// for a token obtained elsewhere (another process sharing a store, a sign-in
// flow). The Store is not written. Failure state (retries, a need for
// re-authentication) is cleared and the next refresh is planned from tok.
// It fails with ErrInvalidToken for a nil, empty or expired token, and with
// ErrUnknownToken or ErrClosed after Remove or Close.
func (h *Handle) Adopt(tok *oauth2.Token) error {
	if h.removed.Load() {
		return &nameError{name: h.name, err: ErrUnknownToken}
	}
	if h.k.closed.Load() {
		return ErrClosed
	}
	now := h.k.clock.wallTime()
	var cur *oauth2.Token
	if s := h.cur.Load(); s != nil {
		cur = s.tok
	}
	snap, err := h.accept(tok, cur, now)
	if err != nil {
		return err
	}
	h.cur.Store(snap)
	h.mu.Lock()
	h.reauth = nil
	h.retryAt = time.Time{}
	h.failures = 0
	h.lastErr = nil
	h.mu.Unlock()
	h.k.emit(Event{Kind: EventAdopted, Token: h.name, Group: h.group, Expiry: expiryTime(snap), Time: now})
	h.k.sched.evaluateSoon(h)
	return nil
}

func invalidateGrace(s *snapshot) time.Duration {
	g := 5 * time.Second
	if s.expiry != 0 {
		g = min(g, time.Duration(s.expiry-s.issued)/10)
	}
	return g
}

// Install is Adopt for a token that must survive a restart, such as the
// result of a new sign-in: it saves tok in the keeper's Store (if any), then
// adopts it. If saving fails, tok is adopted anyway (it is valid, and the
// old session may be dead) and the error is returned.
func (h *Handle) Install(ctx context.Context, tok *oauth2.Token) error {
	if err := h.Adopt(tok); err != nil {
		return err
	}
	if st := h.k.cfg.Store; st != nil {
		if err := st.Save(ctx, h.name, h.cur.Load().tok); err != nil {
			return fmt.Errorf("tokenkeeper: token %q adopted but not saved: %w", h.name, err)
		}
	}
	return nil
}

// Backoff returns the wait before retry number n (0 for the first retry)
// with exponential backoff and full jitter: r * min(max, base*2^n), where r
// is a uniform random number in [0,1).
func Backoff(n int, base, max time.Duration, r float64) time.Duration {
	if n < 0 {
		n = 0
	}
	d := max
	if n < 62 {
		if m := base << uint(n); m > 0 && m < max && m>>uint(n) == base {
			d = m
		}
	}
	if !(r >= 0) {
		r = 0
	}
	if r >= 1 {
		r = math.Nextafter(1, 0)
	}
	return time.Duration(float64(d) * r)
}
