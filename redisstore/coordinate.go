package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// A CoordinateOption configures one coordinated token.
type CoordinateOption func(*entry)

// Rotates says whether the token's source rotates refresh tokens,
// overriding Options.NonRotating for this token. Only a token whose source
// does not rotate (Rotates(false)) is refreshed without the lock while Redis
// is unreachable.
func Rotates(rotates bool) CoordinateOption {
	return func(e *entry) { e.rotates = rotates }
}

// Coordinate wraps src, the source of the token named name, so that the
// processes sharing this store refresh the token once per cycle. Pass the
// result as the Source of the keeper's TokenConfig with the same Name, in a
// keeper whose Config.Store is s.
//
// Each Refresh takes the token's lock in Redis and re-reads the store. If
// another process already stored a newer token, Refresh returns it without
// calling src. Otherwise it calls src with the newest token in the chain
// (whose refresh token is the only unspent one), writes the answer with a
// version check while it still holds the lock, and returns it; the keeper's
// following Save writes nothing. If the lock is held, Refresh waits for the
// holder's token (pub/sub, and a poll every Options.PollInterval) and
// returns it, or takes the lock over when the holder's lease runs out.
// Errors of src are returned unchanged, so the keeper classifies them as
// usual. While Redis is unreachable, see Options.NonRotating.
func (s *Store) Coordinate(src tokenkeeper.Source, name string, opts ...CoordinateOption) tokenkeeper.Source {
	e := s.entry(name)
	e.mu.Lock()
	for _, o := range opts {
		o(e)
	}
	e.mu.Unlock()
	return &coordinated{s: s, src: src, name: name, e: e}
}

type coordinated struct {
	s    *Store
	src  tokenkeeper.Source
	name string
	e    *entry
}

// errLockLost cancels a source call whose lock ran out.
var errLockLost = errors.New("redisstore: refresh lock lost")

const (
	stateHeld    = 0
	stateLocked  = 1
	stateChanged = 2
)

type acquired struct {
	state int
	st    stored
	pttl  time.Duration
	sent  time.Time // when the request left: the lease started after it
}

func newOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// usableMargin is how long a stored token must stay valid to be handed to
// a keeper instead of being refreshed.
func (s *Store) usableMargin() time.Duration { return s.opts.PollInterval }

// Refresh implements tokenkeeper.Source.
func (c *coordinated) Refresh(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
	s, e := c.s, c.e
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := e.lock(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: token %q: %w", c.name, err)
	}
	defer e.unlock()
	if s.degraded.Load() {
		return c.alone(ctx, cur, fmt.Errorf("%w: %s", ErrUnavailable, s.Status().LastError))
	}
	r := e.relOf(cur)
	known := int64(-1)
	if r.known {
		known = r.version
	}
	owner := newOwner()
	waited := false
	for {
		notify := e.waitChan()
		a, err := c.acquire(ctx, owner, known)
		if err != nil {
			if errors.Is(err, ErrUnavailable) {
				return c.alone(ctx, cur, err)
			}
			return nil, err
		}
		switch a.state {
		case stateChanged:
			e.observe(a.st)
			if usable(a.st.tok, time.Now(), s.usableMargin()) && order(a.st, r) > 0 {
				return c.join(a.st), nil
			}
			known = -1 // not usable: take the lock and refresh from it
		case stateHeld:
			if !waited {
				waited = true
				s.st.waits.Add(1)
			}
			known = a.st.version
			wait := s.opts.PollInterval
			if a.pttl > 0 { // look again when the lease ends, if sooner
				wait = min(wait, max(a.pttl, time.Millisecond))
			}
			t := time.NewTimer(wait)
			select {
			case <-notify:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("redisstore: token %q: waiting for another process's refresh: %w", c.name, ctx.Err())
			}
			t.Stop()
		case stateLocked:
			tok, done, err := c.locked(ctx, owner, a, r, waited)
			if done {
				return tok, err
			}
			// The lock was lost or the version moved on: wait for the
			// newer token.
			known = a.st.version
			waited = true
		}
	}
}

// acquire runs acquireScript.
func (c *coordinated) acquire(ctx context.Context, owner string, known int64) (acquired, error) {
	s := c.s
	a := acquired{sent: time.Now()}
	vals, err := acquireScript.Run(ctx, s.c, []string{s.tokKey(c.name), s.lockKey(c.name)},
		owner, s.opts.LockTTL.Milliseconds(), known).Slice()
	if err != nil {
		return a, s.redisErr(ctx, err)
	}
	if len(vals) < 2 {
		return a, fmt.Errorf("redisstore: unexpected lock reply (%d values)", len(vals))
	}
	state, _ := vals[0].(int64)
	v, _ := vals[1].(int64)
	var third any
	if len(vals) > 2 {
		third = vals[2]
	}
	a.state = int(state)
	if a.state == stateHeld {
		pttl, _ := third.(int64)
		a.pttl = time.Duration(pttl) * time.Millisecond
		a.st = stored{version: v, exists: v > 0}
		return a, nil
	}
	a.st = s.decodeStored(c.name, v, third)
	if a.st.err != nil {
		s.st.errors.Add(1)
		s.ev.emit(Event{Kind: EventError, Token: c.name, Version: v, Err: a.st.err})
	}
	return a, nil
}

// locked continues a refresh that holds the lock. done is false when the
// lock was lost or the write refused: the caller then waits for the newer
// token.
func (c *coordinated) locked(ctx context.Context, owner string, a acquired, r rel, waited bool) (tok *oauth2.Token, done bool, err error) {
	s, e := c.s, c.e
	st := a.st
	e.observe(st)
	ord := order(st, r)
	if usable(st.tok, time.Now(), s.usableMargin()) && ord > 0 {
		c.release(owner)
		return c.join(st), true, nil
	}
	if waited {
		s.st.takeovers.Add(1)
		s.ev.emit(Event{Kind: EventTakeover, Token: c.name, Version: st.version})
	}
	head := r.tok
	if st.tok != nil && ord >= 0 {
		head = withRefresh(st.tok, r.tok) // the chain's head holds the unspent refresh token
	}
	ntok, lost, err := c.call(ctx, owner, head, a.sent)
	if lost && err == nil && ntok != nil {
		// The identity provider answered after the lease ran out. If nobody
		// took the lock or stored a token meanwhile, this answer is the
		// chain's head (with a rotating source, the only holder of the
		// unspent refresh token): take the lock again and store it.
		if a2, aerr := c.acquire(ctx, owner, st.version); aerr == nil && a2.state == stateLocked {
			a, lost = a2, false
		}
	}
	if lost {
		// Another process may be refreshing now; never write over it.
		c.release(owner)
		s.st.conflicts.Add(1)
		s.ev.emit(Event{Kind: EventConflict, Token: c.name, Version: st.version, Err: errLockLost})
		if ctx.Err() != nil {
			return nil, true, fmt.Errorf("redisstore: token %q: %w", c.name, ctx.Err())
		}
		return nil, false, nil
	}
	if err != nil {
		c.release(owner)
		return nil, true, err // the source's error, unchanged
	}
	if ntok == nil {
		c.release(owner)
		return nil, true, nil // the keeper reports the nil token
	}
	ntok = withRefresh(ntok, head)
	// The identity provider answered: with a rotating source the previous
	// refresh token is spent, so the answer must not be lost to the
	// caller's deadline. Write it on the store's own lifetime.
	wctx, cancel := s.opCtx()
	v, err := s.commit(wctx, c.name, owner, st.version, ntok)
	cancel()
	switch {
	case err != nil:
		// Not stored: keep it to write back, and hand it out.
		e.keepPending(ntok)
		return ntok, true, nil
	case v < 0:
		s.st.conflicts.Add(1)
		reason := "the stored version moved on"
		if v == -1 {
			reason = "the lock was lost"
		}
		s.ev.emit(Event{Kind: EventConflict, Token: c.name, Version: st.version,
			Err: fmt.Errorf("redisstore: token %q not written: %s: %w", c.name, reason, ErrConflict)})
		c.release(owner)
		return nil, false, nil
	}
	e.setHeld(ntok)
	s.ev.emit(Event{Kind: EventRefreshed, Token: c.name, Version: v})
	return ntok, true, nil
}

// call runs the source while a goroutine extends the lock. If the lease
// runs out (the extension fails or Redis does not answer before it ends),
// the source's ctx is cancelled and lost is true.
func (c *coordinated) call(ctx context.Context, owner string, head *oauth2.Token, leased time.Time) (tok *oauth2.Token, lost bool, err error) {
	s := c.s
	ttl := s.opts.LockTTL
	if time.Since(leased) > ttl/3 {
		// Time passed since the lock was taken (a pause?): make sure it is
		// still ours before sending the refresh token.
		sent := time.Now()
		ok, err := c.extend(ctx, owner, leased.Add(ttl))
		if err != nil || !ok {
			return nil, true, errLockLost
		}
		leased = sent
	}
	lctx, cancel := context.WithCancelCause(ctx)
	var lostFlag atomic.Bool
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.keepLease(lctx, owner, leased, done, &lostFlag, cancel)
	}()
	defer func() {
		close(done)
		wg.Wait()
		cancel(nil)
		lost = lostFlag.Load()
	}()
	s.st.sourceCalls.Add(1)
	tok, err = c.src.Refresh(lctx, head)
	return tok, false, err
}

// keepLease extends the lock every LockTTL/3 until done. The lease is
// measured on this process's monotonic clock from before each request, so
// it always ends here no later than in Redis.
func (c *coordinated) keepLease(ctx context.Context, owner string, leased time.Time, done <-chan struct{},
	lost *atomic.Bool, cancel context.CancelCauseFunc) {
	ttl := c.s.opts.LockTTL
	deadline := leased.Add(ttl)
	next := leased.Add(ttl / 3)
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if !time.Now().Before(deadline) {
			lost.Store(true)
			cancel(errLockLost)
			return
		}
		sent := time.Now()
		ok, err := c.extend(ctx, owner, deadline)
		switch {
		case err == nil && ok:
			deadline = sent.Add(ttl)
			next = sent.Add(ttl / 3)
		case err == nil && !ok:
			lost.Store(true)
			cancel(errLockLost)
			return
		default:
			// Redis did not answer: try again soon, until the lease ends.
			next = time.Now().Add(min(ttl/10, time.Until(deadline)))
		}
		t.Reset(time.Until(next))
	}
}

// extend runs extendScript, giving up at deadline.
func (c *coordinated) extend(ctx context.Context, owner string, deadline time.Time) (bool, error) {
	s := c.s
	ectx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	n, err := extendScript.Run(ectx, s.c, []string{s.lockKey(c.name)}, owner, s.opts.LockTTL.Milliseconds()).Int64()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// release gives the lock up if this process still owns it. A failure is
// harmless: the lease runs out by itself.
func (c *coordinated) release(owner string) {
	s := c.s
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := releaseScript.Run(ctx, s.c, []string{s.lockKey(c.name)}, owner).Err(); err != nil {
		_ = s.redisErr(ctx, err)
	}
}

// join answers a refresh with the token another process stored.
func (c *coordinated) join(st stored) *oauth2.Token {
	c.s.st.joined.Add(1)
	c.e.setHeld(st.tok)
	c.s.ev.emit(Event{Kind: EventJoined, Token: c.name, Version: st.version})
	return st.tok
}

// alone refreshes without Redis, if the source does not rotate refresh
// tokens; the token is written back when Redis returns.
func (c *coordinated) alone(ctx context.Context, cur *oauth2.Token, cause error) (*oauth2.Token, error) {
	s, e := c.s, c.e
	e.mu.Lock()
	rotates := e.rotates
	e.mu.Unlock()
	if rotates {
		return nil, fmt.Errorf("redisstore: token %q not refreshed: its source rotates refresh tokens and the lock is out of reach: %w", c.name, cause)
	}
	s.st.localRefreshes.Add(1)
	tok, err := c.src.Refresh(ctx, cur)
	if err != nil || tok == nil {
		return tok, err
	}
	tok = withRefresh(tok, cur)
	e.keepPending(tok)
	s.ev.emit(Event{Kind: EventLocalRefresh, Token: c.name, Err: cause})
	return tok, nil
}
